#!/usr/bin/env bash
# Vendor Chart.js's UMD build into the dashboard's package data (verifily_action/dashboard/static/), from npm's
# registry through `npm pack`: the dashboard and `verifily report --html` load no script from a CDN. Run it to move
# to another version; the file, its licence and the version (CHARTJS_VERSION) are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-4.6.1}
DEST=verifily_action/dashboard/static
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "chart.js@$VERSION" >/dev/null && tar xzf "chart.js-$VERSION.tgz")
cp "$tmp/package/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
cp "$tmp/package/LICENSE.md" "$DEST/chart.js.LICENSE.md"
echo "chart.js $VERSION $(sha256sum "$DEST/chart.umd.min.js" | cut -c1-64)" > "$DEST/CHARTJS_VERSION"
echo "vendored chart.js $VERSION into $DEST"
