"""The portal's signing form of a 1 MiB JobSpec, by hand (never in the test suite): milliseconds
per ``js_sorted_stringify`` (what verifying a portal-signed body costs before the signature
check) and, over the same value in the same run, the standard library's C encoder with sorted
keys (``json.dumps``), the baseline. Best of ``--repeats`` runs each. Target: under 100 ms for
the 1 MiB spec (the API's largest body). A unit test asserted that bound until it failed on a
loaded machine (116 ms): timing belongs here, not in the test suite.

    .venv/bin/python -m bench.jsjson [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

from beacon.crypto.jsjson import js_sorted_stringify
from bench.evidence import best_of
from tests.factories import mebibyte_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    spec = mebibyte_spec()
    size = len(js_sorted_stringify(spec))
    ours = best_of(options.repeats, lambda: js_sorted_stringify(spec))
    stdlib = best_of(options.repeats, lambda: json.dumps(spec, sort_keys=True, separators=(",", ":"),
                                                         ensure_ascii=False).encode())
    print(f"{size / 2**20:.2f} MiB signing form: js_sorted_stringify {ours * 1000:.0f} ms "
          f"(target < 100 ms), json.dumps with sorted keys {stdlib * 1000:.0f} ms: ratio {ours / stdlib:.1f}×")


if __name__ == "__main__":
    main()
