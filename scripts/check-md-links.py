#!/usr/bin/env python3
"""check-md-links.py [FILE.md ...] - every relative Markdown link resolves.

Checks `[text](target)` links in the given files (default: README.md, CONTRIBUTING.md,
docs/*.md and bench/**/*.md): the target file or folder exists, and a `#anchor` names a
heading of the target file, slugged as GitHub does (lower case, punctuation dropped, spaces
to hyphens, -1/-2 for repeats). External links (http:, https:, mailto:) are not fetched.
Exit 1 and one line per broken link if any is broken, else 0.
"""
import glob
import os
import re
import sys
import unicodedata

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(text):
    text = re.sub(r"`", "", text).strip().lower()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in " -_" or cat[0] in "LN":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def anchors(path):
    seen = {}
    found = set()
    fence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            m = None if fence else HEADING.match(line)
            if not m:
                continue
            s = slug(m.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else "%s-%d" % (s, n))
    return found


def check(path):
    bad = []
    fence = False
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            if fence:
                continue
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = path if not file_part else os.path.normpath(
                    os.path.join(os.path.dirname(path), file_part))
                if not os.path.exists(dest):
                    bad.append("%s:%d: %s: no such file" % (path, no, target))
                elif anchor and (os.path.isdir(dest) or anchor not in anchors(dest)):
                    bad.append("%s:%d: %s: no heading with that anchor" % (path, no, target))
    return bad


def main(argv):
    files = argv[1:] or sorted(
        set(["README.md", "CONTRIBUTING.md"] + glob.glob("docs/*.md")
            + glob.glob("bench/**/*.md", recursive=True)))
    bad = []
    for path in files:
        if os.path.exists(path):
            bad += check(path)
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
