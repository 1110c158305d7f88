"""The dashboard: run, comparison and dataset pages rendered from Jinja2 templates, served by `verifily server`
behind its tokens (`web`) and written as one self-contained HTML file by `verifily report --html` (`render`).

Modules: `runview` (a run folder -> what its page shows), `compareview` (the `compare` package's comparison ->
its page: the same table cells and the per-slice deltas for the chart), `render` (the Jinja2 environment, whose every
`{{ … }}` goes through report.escape.html; the vendored chart script and CSS, linked or inlined), `web` (login with a
token, the session cookie and the pages), `stored` (a run or dataset version rebuilt from the server's blob store).
Nothing is loaded from another site: the chart is Chart.js's UMD build vendored in static/ (scripts/vendor_chartjs.sh
records its version and licence there) and every page carries a Content-Security-Policy that allows no remote script.
"""
