"""Fail unless a pytest junit XML report ran tests and skipped none.

Usage: python tools/check_junit.py REPORT.xml [LABEL]
On this machine (root, /dev/net/tun) every test that needs TUN must run, so a skip is a bug.
"""

import sys
import xml.etree.ElementTree as ET


def main() -> int:
    path = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else path
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    keys = ("tests", "skipped", "failures", "errors")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
    print(f"junit {label}: {counts['tests']} tests, {counts['skipped']} skipped, "
          f"{counts['failures']} failures, {counts['errors']} errors")
    if counts["tests"] == 0 or counts["skipped"]:
        for case in root.iter("testcase"):
            skip = case.find("skipped")
            if skip is not None:
                where = f"{case.get('classname')}::{case.get('name')}"
                print(f"  skipped: {where}: {skip.get('message')}")
        print(f"{label}: tests were skipped or none ran; on this machine every TUN test must run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
