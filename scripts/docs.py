#!/usr/bin/env python3
"""Writes the option tables of docs/ from the programs' own --help, so they cannot drift.

    scripts/docs.py [--bin-dir build/bin]           rewrite every generated section in docs/
    scripts/docs.py --check [--bin-dir build/bin]   exit 1, naming each file, if one differs

A generated section sits between two marker lines in any docs/*.md file:

    <!-- options: ordinal-backup restore -->
    ... (written by this script: the usage line, a table of the options, the exit status)
    <!-- end options -->

The words after "options:" are the command line whose --help is read (the program is taken
from --bin-dir). Everything between the markers is replaced; edit the --help text in the
program (its options table), never the section. scripts/test.sh runs --check after the build.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
BEGIN = re.compile(r"^<!-- options: (.+?) -->$")
END = "<!-- end options -->"
PROGRAMS = ("ordinal-provisioner", "ordinal-backup")
# An option line of --help: "  -h, --help   text" or "  --name ARG   text".
OPTION = re.compile(r"^  (?:-\w, )?(--[\w-]+)((?: [^ ]+)?)\s{2,}(.*)$")
# "(2 here)": a value of the machine the help was printed on, not of the program.
MACHINE = re.compile(r" \(\d+ here\)")


def help_text(bin_dir, command):
    words = command.split()
    if words[0] not in PROGRAMS:
        raise SystemExit(f"docs: unknown program '{words[0]}' in a marker (one of {PROGRAMS})")
    exe = os.path.join(bin_dir, words[0])
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"docs: {exe} is not built (scripts/build.sh, or give --bin-dir)")
    cp = subprocess.run([exe, *words[1:], "--help"], capture_output=True, text=True,
                        env=dict(os.environ, LC_ALL="C"))
    if cp.returncode != 0:
        raise SystemExit(f"docs: '{command} --help' exited {cp.returncode}:\n{cp.stderr}")
    return MACHINE.sub("", cp.stdout)


def cell(text):
    return text.replace("|", "\\|")


def split_help(text):
    """(meaning, env, default, required) of one option's help text."""
    required = False
    env = default = ""
    if text.endswith(" Required."):
        required, text = True, text[: -len(" Required.")]
    m = re.search(r"(?:^| )Default: (.*)\.$", text)
    if m:
        default, text = m.group(1), text[: m.start()]
    m = re.search(r"(?:^| )Env: ([A-Z_][A-Z0-9_]*)\.$", text)
    if m:
        env, text = m.group(1), text[: m.start()]
    return text.strip(), env, default, required


def section(text, command):
    """The generated Markdown for one command's --help."""
    lines = text.splitlines()
    out = []
    usage = next((l[len("Usage: "):] for l in lines if l.startswith("Usage: ")), None)
    if usage:
        out += ["```", usage, "```", ""]
    if "Options:" in lines:
        out += ["| option | environment | default | meaning |", "|---|---|---|---|"]
        for line in lines[lines.index("Options:") + 1:]:
            if not line.strip():
                break
            m = OPTION.match(line)
            if not m:
                raise SystemExit(f"docs: cannot read this option line of '{command} --help':\n"
                                 f"{line}")
            name, arg, meaning = m.group(1), m.group(2), m.group(3)
            if name in ("--help", "--version"):
                continue
            meaning, env, default, required = split_help(meaning)
            default = "required" if required and not default else default
            out.append(f"| `{name}{arg}` | {f'`{env}`' if env else ''} | {cell(default)} | "
                       f"{cell(meaning)} |")
        out.append("")
    if "Commands:" in lines:
        out += ["| command | what it does |", "|---|---|"]
        for line in lines[lines.index("Commands:") + 1:]:
            if not line.strip():
                break
            name, _, what = line.strip().partition(" ")
            out.append(f"| `{name}` | {cell(what.strip())} |")
        out.append("")
    status = next((l for l in lines if l.startswith("Exit status:")), None)
    if status:
        out += [status, ""]
    out.append(f"(Generated from `{command} --help` by `scripts/docs.py`.)")
    return out


def rewrite(path, bin_dir, seen):
    """The file's text with every generated section rewritten; adds the commands to seen."""
    with open(path) as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        end = i
        while end < len(lines) and lines[end] != END:
            if BEGIN.match(lines[end]):
                break
            end += 1
        if end == len(lines) or lines[end] != END:
            raise SystemExit(f"docs: {os.path.relpath(path, ROOT)}: '{lines[i - 1]}' has no "
                             f"'{END}' after it")
        seen.add(m.group(1))
        out += [""] + section(help_text(bin_dir, m.group(1)), m.group(1)) + [""]
        i = end
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 when a file differs from what would be written")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    stale, seen = [], set()
    for name in sorted(os.listdir(DOCS)):
        path = os.path.join(DOCS, name)
        if not name.endswith(".md"):
            continue
        with open(path) as f:
            old = f.read()
        new = rewrite(path, bin_dir, seen)
        if new == old:
            continue
        stale.append(os.path.relpath(path, ROOT))
        if not args.check:
            with open(path, "w") as f:
                f.write(new)
    # Every program and every subcommand its --help lists has a section somewhere.
    wanted = set(PROGRAMS)
    top = help_text(bin_dir, "ordinal-backup").splitlines()
    if "Commands:" in top:
        for line in top[top.index("Commands:") + 1:]:
            if not line.strip():
                break
            wanted.add("ordinal-backup " + line.split()[0])
    for command in sorted(wanted - seen):
        print(f"docs: no section for '{command} --help' in docs/: add the lines "
              f"'<!-- options: {command} -->' and '{END}' to docs/reference.md, then run "
              f"scripts/docs.py --bin-dir {os.path.relpath(bin_dir, ROOT)}")
    if wanted - seen:
        return 1
    if args.check and stale:
        rel = os.path.relpath(bin_dir, ROOT)
        for p in stale:
            print(f"docs: {p} differs from the programs' --help ({rel}): "
                  f"run scripts/docs.py --bin-dir {rel}")
        return 1
    if args.check:
        print("docs: the option tables in docs/ match the programs' --help")
    else:
        print("docs: " + (", ".join(stale) + " rewritten" if stale else "nothing to change"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
