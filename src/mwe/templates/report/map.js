/* The dataset map: one interactive scatter per dataset (Plotly), coloured by label or by
   cluster, filtered by label_confidence; clicking a point lists its cluster's rows. Texts
   are model-written: they reach the page as JSON and are shown with textContent, or as
   escaped hover text. */
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39"];
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function wrap(s) {
    var words = String(s).split(/\s+/), lines = [], line = "";
    words.forEach(function (w) {
      if ((line + " " + w).length > 70 && line) { lines.push(line); line = w; }
      else { line = line ? line + " " + w : w; }
    });
    if (line) { lines.push(line); }
    return lines.slice(0, 8).map(esc).join("<br>");
  }
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
  function show(root, m) {
    var plot = root.querySelector(".mwe-map-plot");
    var colour = root.querySelector(".mwe-map-colour");
    var conf = root.querySelector(".mwe-map-conf");
    var confShown = root.querySelector(".mwe-map-conf-value");
    var list = root.querySelector(".mwe-map-rows");
    var names = m.clusters.map(function (c) { return c.cluster + ": " + c.name; });
    function draw() {
      var min = Number(conf.value) / 100, mode = colour.value, groups = {}, order = [];
      confShown.textContent = min.toFixed(2);
      m.points.forEach(function (p, i) {
        if (p.confidence !== null && p.confidence < min) { return; }
        var key = mode === "label" ? p.label : names[p.cluster];
        if (!groups[key]) { groups[key] = {x: [], y: [], i: [], t: []}; order.push(key); }
        groups[key].x.push(p.x); groups[key].y.push(p.y); groups[key].i.push(i);
        groups[key].t.push(wrap(p.text) + "<br><i>" + esc(p.label) + " · " +
                           esc(names[p.cluster]) + (p.confidence === null ? "" :
                           " · confidence " + p.confidence.toFixed(3)) + "</i>");
      });
      if (mode !== "label") { order.sort(function (a, b) { return parseInt(a, 10) - parseInt(b, 10); }); }
      var traces = order.map(function (key, k) {
        var g = groups[key];
        return {type: "scatter", mode: "markers", name: key, x: g.x, y: g.y, customdata: g.i,
                hovertext: g.t, hoverinfo: "text",
                marker: {size: 7, opacity: 0.8, color: PALETTE[k % PALETTE.length]}};
      });
      window.Plotly.react(plot, traces, {margin: {l: 30, r: 10, t: 10, b: 30}, height: 460,
        hovermode: "closest", legend: {font: {size: 10}}, xaxis: {zeroline: false, showticklabels: false},
        yaxis: {zeroline: false, showticklabels: false}}, {displaylogo: false, responsive: true});
    }
    function rows(c) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      var info = m.clusters[c], head = document.createElement("p");
      head.textContent = "Cluster " + names[c] + " (" + info.names.join("; ") + ", named by " +
        info.named_by + "): " + info.size + " rows";
      list.appendChild(head);
      var table = document.createElement("table"), tr = document.createElement("tr");
      ["line", "label", "label_confidence", "text"].forEach(function (h) {
        var th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
      table.appendChild(tr);
      m.points.forEach(function (p) {
        if (p.cluster !== c) { return; }
        var r = document.createElement("tr");
        cell(r, String(p.line)); cell(r, p.label);
        cell(r, p.confidence === null ? "–" : p.confidence.toFixed(3)); cell(r, p.text);
        table.appendChild(r);
      });
      list.appendChild(table);
    }
    colour.addEventListener("change", draw);
    conf.addEventListener("input", draw);
    draw();
    plot.on("plotly_click", function (ev) {
      if (ev.points.length) { rows(m.points[ev.points[0].customdata].cluster); }
    });
  }
  document.querySelectorAll(".mwe-map").forEach(function (root) {
    var data = JSON.parse(root.querySelector("script.mwe-map-data").textContent);
    show(root, data);
  });
})();
