"""Copies suite results from an unpacked scripts/h200_run.sh work folder into evidence/, fit to commit.

What a committed result must not carry: the generated texts (tens of kilobytes per run, and nothing
the judge reads) and the device's paths. Texts become null; /root/fleetrun/ (the snapshot the driver ran
from) is dropped, /root/w/ (or /root/NAME/ for a work folder unpacked as NAME) becomes WORKDIR/,
/tmp/site/ (vLLM's install) becomes SITE/. JSON is written compact, as the earlier evidence is.

    python scripts/h200_evidence.py UNPACKED_W DEST PREFIX [DEVICE_ROOT]
e.g.  python scripts/h200_evidence.py /tmp/p/w evidence/h200/mseries ms
copies UNPACKED_W/ms*/results/*.json to DEST/ms*/, and progress.log and timing.tsv beside them (their
lines of those runs, added to what DEST already has), and host.txt if the work folder has one.
DEVICE_ROOT: the folder the driver ran from when it was not /root/fleetrun (the device tool's copy of the
working tree), dropped from paths as /root/fleetrun/ is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPLACEMENTS = (("/root/fleetrun/", ""), ("/root/w/", "WORKDIR/"), ("/tmp/site/", "SITE/"))


def scrub(value: Any, replacements: tuple[tuple[str, str], ...] = REPLACEMENTS) -> Any:
    if isinstance(value, dict):
        return {k: None if k == "texts" else scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
    return value


def main(argv: list[str]) -> int:
    source, dest, prefix = Path(argv[0]), Path(argv[1]), argv[2]
    # The driver ran in /root/<the work folder's name> on the device (scripts/h200_run.sh WORKDIR).
    replacements = (*REPLACEMENTS, (f"/root/{source.name}/", "WORKDIR/"))
    if len(argv) > 3:
        replacements = (*replacements, (argv[3].rstrip("/") + "/", ""))
    copied = 0
    for result in sorted(source.glob(f"{prefix}*/results/*.json")):
        target = dest / result.parent.parent.name / result.name
        target.parent.mkdir(parents=True, exist_ok=True)
        document = scrub(json.loads(result.read_text()), replacements)
        target.write_text(json.dumps(document, separators=(",", ":")) + "\n")
        copied += 1
    for name in ("progress.log", "timing.tsv"):
        if (source / name).exists():
            lines = [line for line in (source / name).read_text().splitlines(keepends=True)
                     if f"\t{prefix}" in line or f" {prefix}" in line]
            text = scrub("".join(lines), replacements)
            earlier = (dest / name).read_text() if (dest / name).exists() else ""
            seen = set(earlier.splitlines())
            (dest / name).write_text(earlier + "".join(line for line in text.splitlines(keepends=True)
                                                       if line.rstrip("\n") not in seen))
    if (source / "host.txt").exists():  # the machine's description (scripts/h200_run.sh host), whole
        (dest / "host.txt").write_text((source / "host.txt").read_text())
    print(f"{copied} results copied to {dest}")
    return 0 if copied else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
