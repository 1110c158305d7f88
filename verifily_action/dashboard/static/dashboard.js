/* Verifily dashboard charts: reads the JSON data blocks the page carries and draws them with the vendored Chart.js
   (no inline script, no remote script: the page's Content-Security-Policy allows neither). */
(function () {
  "use strict";
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
  // The interval of each bar as a whisker (Chart.js has no error bars): drawn after the bars, from the data set's
  // `lows` and `highs`.
  var whiskers = {
    id: "whiskers",
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, y = chart.scales.y;
      chart.data.datasets.forEach(function (ds, i) {
        var meta = chart.getDatasetMeta(i);
        if (!ds.lows || meta.hidden) return;
        meta.data.forEach(function (bar, j) {
          if (ds.lows[j] === null || ds.highs[j] === null) return;
          var lo = y.getPixelForValue(ds.lows[j]), hi = y.getPixelForValue(ds.highs[j]), x = bar.x;
          ctx.save();
          ctx.strokeStyle = "#333";
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(x, lo); ctx.lineTo(x, hi);
          ctx.moveTo(x - 5, lo); ctx.lineTo(x + 5, lo);
          ctx.moveTo(x - 5, hi); ctx.lineTo(x + 5, hi);
          ctx.stroke();
          ctx.restore();
        });
      });
    }
  };
  function deltaChart(canvas) {
    var d = data(canvas.dataset.source);
    var m = d.metrics[Number(canvas.dataset.metric)];
    var datasets = m.series.map(function (s, i) {
      return {
        label: s.run + " − baseline",
        data: s.deltas,
        lows: s.lows,
        highs: s.highs,
        backgroundColor: s.deltas.map(function (v, j) {
          return s.significant[j] ? COLORS[i % COLORS.length] : COLORS[i % COLORS.length] + "80";
        })
      };
    });
    // the scale holds the whiskers too, not only the bars
    var ends = [0];
    m.series.forEach(function (s) {
      s.lows.concat(s.highs).forEach(function (v) { if (v !== null) ends.push(v); });
    });
    return new Chart(canvas, {
      type: "bar",
      data: { labels: d.slices, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { suggestedMin: Math.min.apply(null, ends), suggestedMax: Math.max.apply(null, ends),
                       title: { display: true, text: "change in " + m.label } } },
        plugins: { legend: { position: "top" } }
      },
      plugins: [whiskers]
    });
  }
  function lossChart(canvas) {
    var points = data(canvas.dataset.source);
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: points.map(function (p) { return p.step; }),
        datasets: [{ label: "training loss", data: points.map(function (p) { return p.loss; }), borderColor: COLORS[0],
                     pointRadius: 2, tension: 0 }]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: "step" } }, y: { title: { display: true, text: "loss" } } }
      }
    });
  }
  function draw() {
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.chart === "delta") deltaChart(canvas);
      else if (canvas.dataset.chart === "loss") lossChart(canvas);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
