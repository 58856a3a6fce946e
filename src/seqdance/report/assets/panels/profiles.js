/* Residue profiles: one row per quantity on a shared residue axis; hover gives residue, number, value and unit. */
SeqdanceReport.registerPanel("profiles", function (el, data, protein) {
  "use strict";
  const SR = window.SeqdanceReport;
  const labels = SR.residueLabels(protein.sequence, protein.chain_lengths);
  const x = labels.map((_, i) => i + 1);
  const rows = data.rows, gap = 0.05;
  const height = (1 - gap * (rows.length - 1)) / rows.length;
  const traces = [], annotations = [];
  const layout = {
    height: 190 * rows.length + 70, margin: { l: 70, r: 10, t: 24, b: 50 }, hovermode: "closest",
    legend: { traceorder: "normal", font: { size: 11 } }, xaxis: { title: { text: "residue" }, anchor: "y" + (rows.length > 1 ? rows.length : ""), range: [0.5, x.length + 0.5] },
    shapes: SR.chainLines(protein.chain_lengths, ["x"]), annotations: annotations,
  };
  rows.forEach((row, r) => {
    const axis = r === 0 ? "y" : "y" + (r + 1);
    const top = 1 - r * (height + gap);
    layout["yaxis" + (r === 0 ? "" : r + 1)] = Object.assign({ domain: [top - height, top], anchor: "x", zeroline: false },
      row.log ? { type: "log", dtick: "D2" } : {}, row.stacked ? { range: [0, 1] } : {});
    annotations.push({ text: "<b>" + SR.escape(row.title) + "</b>", xref: "paper", yref: "paper", x: 0, y: top, xanchor: "left", yanchor: "bottom", showarrow: false, font: { size: 12 } });
    row.traces.forEach((trace) => {
      const head = "<b>%{customdata[0]}</b><br>";
      if (trace.spread) {
        const lower = trace.values.map((v, i) => (v === null ? null : Math.max(0, v - (trace.spread.values[i] || 0))));
        const upper = trace.values.map((v, i) => (v === null ? null : v + (trace.spread.values[i] || 0)));
        traces.push({ type: "scatter", mode: "lines", x: x, y: lower, yaxis: axis, line: { width: 0 }, hoverinfo: "skip", showlegend: false });
        traces.push({ type: "scatter", mode: "lines", x: x, y: upper, yaxis: axis, line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(31,119,180,0.2)", hoverinfo: "skip", name: "± " + trace.spread.name });
      }
      const custom = labels.map((label, i) => [label, trace.spread ? trace.spread.values[i] : null]);
      const spread = trace.spread ? " ± %{customdata[1]:.4~g} (" + trace.spread.name + ")" : "";
      const base = { type: "scatter", mode: "lines", x: x, y: trace.values, yaxis: axis, name: trace.label, customdata: custom,
        hovertemplate: head + SR.escape(trace.name) + " = %{y:.4~g}" + spread + " " + SR.escape(trace.unit) + "<extra></extra>" };
      if (row.stacked) Object.assign(base, { stackgroup: "ss", line: { width: 0.5, color: trace.color }, fillcolor: trace.color });
      else base.line = { width: 1.6 };
      traces.push(base);
    });
  });
  const plot = document.createElement("div");
  plot.className = "plot profiles-plot";
  el.appendChild(plot);
  Plotly.newPlot(plot, traces, layout, SR.plotConfig);
});
