"""Shared by the benchmark reports: README.md's generated sections, each between
<!-- bench:NAME:start --> and <!-- bench:NAME:end --> (appended, after `heading`, when missing)."""


def put_section(readme, name, body, heading=""):
    text = open(readme).read()
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    section = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += f"\n{heading}{section}\n"
    open(readme, "w").write(text)
