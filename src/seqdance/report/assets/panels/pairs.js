/* Pair maps: one zoomable heat map per quantity (row i, column j), colour scale over the map's stated range. */
SeqdanceReport.registerPanel("pairs", function (el, data, protein) {
  "use strict";
  const SR = window.SeqdanceReport;
  /* Sequential maps use a square-root-like scale: colour stops at t² of the range. */
  const warm = ["#ffffe5", "#fee391", "#fe9929", "#cc4c02", "#662506"];
  const sqrtScale = warm.map((c, k) => [Math.pow(k / (warm.length - 1), 2), c]);
  const row = document.createElement("div");
  row.className = "pair-row";
  el.appendChild(row);
  const f = data.factor;
  const starts = Array.from({ length: data.maps[0].n }, (_, k) => k * f + 1);
  const where = f > 1 ? "blocks at residues %{y} and %{x} (" + f + " × " + f + ")" : "residues %{y} and %{x}";
  data.maps.forEach((map) => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = map.title;
    const plot = document.createElement("div");
    plot.className = "plot pair-plot";
    plot.dataset.map = map.name;
    figure.appendChild(caption);
    figure.appendChild(plot);
    row.appendChild(figure);
    const trace = {
      type: "heatmap", x: starts, y: starts, z: SR.pairMatrix(map), zmin: map.lo, zmax: map.hi,
      colorscale: map.scale === "diverging" ? "RdBu" : sqrtScale,
      colorbar: { thickness: 10, len: 0.8 }, hoverongaps: false,
      hovertemplate: where + "<br>" + SR.escape(map.name) + " = %{z:.3~f} (" + SR.escape(map.unit) + ")<extra></extra>",
    };
    const shapes = f === 1 ? SR.chainLines(data.chain_lengths, ["x", "y"]) : [];
    const layout = {
      width: 420, height: 430, margin: { l: 50, r: 10, t: 30, b: 40 },
      xaxis: { title: { text: "residue j" }, constrain: "domain" }, plot_bgcolor: "#d9d9d9",
      yaxis: { title: { text: "residue i" }, autorange: "reversed", scaleanchor: "x", constrain: "domain" }, shapes: shapes,
    };
    Plotly.newPlot(plot, [trace], layout, SR.plotConfig);
  });
});
