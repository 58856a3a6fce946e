/* Saturation heat map: position × mutant residue; hover gives the mutant, its scores and the most changed properties. */
SeqdanceReport.registerPanel("saturation", function (el, data) {
  "use strict";
  const SR = window.SeqdanceReport;
  const aas = data.amino_acids.split("");
  const xs = data.positions.map((p, k) => data.wild_type[k] + p);
  const text = aas.map((aa, r) => xs.map((label, c) => {
    const lines = ["<b>" + label + aa + "</b>"];
    data.columns.forEach((col) => lines.push(SR.escape(col.name) + " = " + SR.g(col.grid[r][c], 4)));
    if (data.top) {
      const names = data.top.index[r][c].map((k, t) => (k < 0 ? null : data.top.properties[k] + " (S = " + SR.g(data.top.value[r][c][t], 3) + ")")).filter(Boolean);
      if (names.length) lines.push("most changed: " + names.join(", "));
    }
    return lines.join("<br>");
  }));
  const first = data.columns[0];
  const controls = document.createElement("div");
  controls.className = "controls";
  el.appendChild(controls);
  const holder = document.createElement("div");
  holder.className = "wide";
  el.appendChild(holder);
  const plot = document.createElement("div");
  plot.className = "plot saturation-plot";
  holder.appendChild(plot);
  const z = first ? first.grid : aas.map(() => xs.map(() => 0));
  const heat = {
    type: "heatmap", x: xs, y: aas, z: z, text: text, hovertemplate: "%{text}<extra></extra>", colorscale: "Viridis",
    hoverongaps: false, colorbar: { title: { text: first ? SR.escape(first.name) : "" }, thickness: 10 }, xgap: 1, ygap: 1,
  };
  const wt = { type: "scatter", mode: "markers", x: [], y: [], marker: { color: "black", size: 4 }, hoverinfo: "skip", name: "wild type", showlegend: false };
  data.wild_type.forEach((aa, k) => { if (aas.indexOf(aa) >= 0) { wt.x.push(xs[k]); wt.y.push(aa); } });
  const width = Math.min(Math.max(700, 13 * xs.length + 160), 30000);
  const layout = {
    width: width, height: 440, margin: { l: 50, r: 20, t: 20, b: 70 }, plot_bgcolor: "#e6e6e6",
    xaxis: { title: { text: "position (wild-type residue and number)" }, type: "category", tickangle: -90 },
    yaxis: { title: { text: "mutant residue" }, type: "category", autorange: "reversed" },
  };
  if (data.columns.length > 1) {
    const label = document.createElement("label");
    label.textContent = "colour by ";
    const select = document.createElement("select");
    data.columns.forEach((col, k) => { const o = document.createElement("option"); o.value = k; o.textContent = col.name; select.appendChild(o); });
    select.addEventListener("change", () => {
      const col = data.columns[Number(select.value)];
      Plotly.restyle(plot, { z: [col.grid], "colorbar.title.text": col.name }, [0]);
    });
    label.appendChild(select);
    controls.appendChild(label);
  }
  Plotly.newPlot(plot, [heat, wt], layout, SR.plotConfig);
});
