#!/usr/bin/env bash
# Install the npm packages the GitHub tests read: GitHub's official OpenAPI description (@octokit/openapi), its
# GraphQL schema (@octokit/graphql-schema) and real webhook payloads (@octokit/webhooks-examples). They go into a
# cache folder outside the repository (never committed); the tests find it through VERIFILY_NPM_FIXTURES or the same
# default. Prints the folder.
set -euo pipefail
PREFIX="${VERIFILY_NPM_FIXTURES:-${XDG_CACHE_HOME:-$HOME/.cache}/verifily-npm}"
mkdir -p "$PREFIX"
if [ ! -f "$PREFIX/node_modules/@octokit/openapi/generated/api.github.com.json" ] \
   || [ ! -f "$PREFIX/node_modules/@octokit/webhooks-examples/api.github.com/index.json" ] \
   || [ ! -f "$PREFIX/node_modules/@octokit/graphql-schema/schema.graphql" ]; then
  npm install --no-audit --no-fund --prefix "$PREFIX" \
    @octokit/openapi@23.0.2 @octokit/webhooks-examples@7.6.1 @octokit/graphql-schema@15.26.1 >&2
fi
echo "$PREFIX"
