"""Shared by the benchmark reports: running gnuplot, and README.md's generated sections (each
between <!-- bench:NAME:start --> and <!-- bench:NAME:end -->) with the files they show, kept
in scripts/bench/."""
import os
import shutil
import subprocess
import sys


def plot(script):
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"gnuplot failed: {e}", file=sys.stderr)


def kept_dir(readme):
    keep = os.path.join(os.path.dirname(os.path.abspath(readme)), "scripts", "bench")
    os.makedirs(keep, exist_ok=True)
    return keep


def put_section(readme, name, body, heading=""):
    text = open(readme).read()
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    section = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += f"\n{heading}{section}\n"
    open(readme, "w").write(text)


def publish(csv_path, md_path, section, body, readme="README.md"):
    """Keeps the run's CSV and table in scripts/bench/ and puts `body` into README's section."""
    keep = kept_dir(readme)
    shutil.copy(csv_path, os.path.join(keep, os.path.basename(csv_path)))
    shutil.copy(md_path, os.path.join(keep, os.path.basename(md_path)))
    put_section(readme, section, body)
