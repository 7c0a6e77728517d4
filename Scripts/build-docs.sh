#!/usr/bin/env bash
# Builds the DocC documentation of the Pprof module with warnings as errors,
# and fails if a public symbol has no documentation comment.
# Output: .build/plugins/Swift-DocC/outputs/Pprof.doccarchive
set -euo pipefail
cd "$(dirname "$0")/.."
./Scripts/install-deps.sh
swift package --scratch-path .build generate-documentation --target Pprof --warnings-as-errors \
    --experimental-documentation-coverage --coverage-summary-level brief
coverage=.build/plugins/Swift-DocC/outputs/Pprof.doccarchive/documentation-coverage.json
[ -f "$coverage" ] || { echo "build-docs: $coverage is missing" >&2; exit 1; }
python3 - "$coverage" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))
symbols = [e for e in entries if e["kind"]["isSymbol"] and e["kind"]["id"] != "org.swift.docc.kind.module"]
# `!=` comes from Equatable's default implementation, not from this module.
missing = [e["referencePath"] for e in symbols if not e.get("hasAbstract") and e["title"] != "!=(_:_:)"]
if missing:
    print("build-docs: public symbols without a documentation comment:", *missing, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"build-docs: {len(symbols)} public symbols, all documented")
PY
