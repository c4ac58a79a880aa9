"""JupyterLab's markdown-and-math pipeline, in Python, to check notebook prose without a browser.

JupyterLab (4.x, ``@jupyterlab/rendermime``) renders a markdown cell, or a ``text/markdown``
output, in four steps:

1. ``removeMath`` cuts the source at ``$``, ``$$``, ``\\(``, ``\\[``, ``\\begin{..}``, braces and
   blank lines, and lifts each delimited span out as ``@@n@@`` (code spans and fences are
   protected first; ``\\$`` is not a delimiter);
2. marked renders the rest as Markdown (``\\$`` becomes a plain ``$`` here);
3. ``replaceMath`` puts the lifted spans back, HTML-escaped;
4. MathJax 3 (``processEscapes``, inline ``$...$`` and ``\\(...\\)``, display ``$$...$$`` and
   ``\\[...\\]``) scans the rendered page's text, string by string (a string ends at every
   element), skipping ``code``, ``pre`` and anything inside an element of class
   ``mathjax_ignore``, and typesets every delimited pair it finds.

Step 4 is where escaped dollars go wrong: the ``\\$`` that step 1 left alone is a ``$`` by
then, and two of them in one paragraph become one formula. :func:`remove_math` ports
JupyterLab's own function (``packages/rendermime/src/latex.ts``, as shipped in the installed
``jupyterlab`` package's ``static/jlab_core.*.js``); :func:`typeset` follows MathJax's
``HTMLDomStrings`` and ``FindTeX``. Step 2 uses mistune (nbconvert's Markdown parser) in
place of marked: both are CommonMark renderers that pass inline HTML through.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_INLINE = "$"
_MATHSPLIT = re.compile(r"(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\[()[\]])", re.I)
_FENCE = re.compile(r"^(?P<fence>`{3,}|(?:~T){3,})[^`\n]*\n([\s\S]*?)^(?P=fence)`*$", re.M)
_CODESPAN = re.compile(r"(^|[^\\])(`+)([^\n]*?[^`\n])\2(?!`)", re.M)


def _process_math(i: int, j: int, de_tilde, math: list, blocks: list) -> list:
    block = "".join(blocks[i:j + 1]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    while j > i:
        blocks[j] = ""
        j -= 1
    blocks[i] = f"@@{len(math)}@@"
    math.append(de_tilde(block))
    return blocks


def remove_math(text: str) -> tuple[str, list[str]]:
    """JupyterLab's ``removeMath``: (text with ``@@n@@`` placeholders, the math spans with
    their delimiters, HTML-escaped)."""
    math: list[str] = []
    start = end = last = None
    braces = 0
    if "`" in text or "~~~" in text:
        text = text.replace("~", "~T")
        text = _FENCE.sub(lambda m: m.group(0).replace("$", "~D"), text)
        text = _CODESPAN.sub(lambda m: m.group(0).replace("$", "~D"), text)

        def de_tilde(t):
            return re.sub(r"~([TD])", lambda m: "~" if m.group(1) == "T" else "$", t)
    else:
        def de_tilde(t):
            return t
    blocks = _MATHSPLIT.split(re.sub(r"\r\n?", "\n", text))
    i = 1
    while i < len(blocks):
        block = blocks[i]
        if block[:1] == "@":
            blocks[i] = f"@@{len(math)}@@"
            math.append(block)
        elif start is not None:
            if block == end:
                if braces:
                    last = i
                else:
                    blocks = _process_math(start, i, de_tilde, math, blocks)
                    start = end = last = None
            elif re.search(r"\n.*\n", block):
                if last is not None:
                    i = last
                    blocks = _process_math(start, i, de_tilde, math, blocks)
                start = end = last = None
                braces = 0
            elif block == "{":
                braces += 1
            elif block == "}" and braces:
                braces -= 1
        else:
            if block in (_INLINE, "$$"):
                start, end, braces = i, block, 0
            elif block in ("\\\\(", "\\\\["):
                start, end, braces = i, "\\\\)" if block[-1] == "(" else "\\\\]", 0
            elif block[1:6] == "begin":
                start, end, braces = i, "\\end" + block[6:], 0
        i += 2
    if start is not None and last is not None:
        blocks = _process_math(start, last, de_tilde, math, blocks)
    return de_tilde("".join(blocks)), math


def replace_math(text: str, math: list[str]) -> str:
    def back(m):
        s = math[int(m.group(1))]
        if s.startswith("\\\\(") and s.endswith("\\\\)"):
            s = "\\(" + s[3:-3] + "\\)"
        elif s.startswith("\\\\[") and s.endswith("\\\\]"):
            s = "\\[" + s[3:-3] + "\\]"
        return s
    return re.sub(r"@@(\d+)@@", back, text)


def render(source: str) -> str:
    """The HTML JupyterLab puts on the page for a markdown ``source``, before MathJax."""
    import mistune

    text, math = remove_math(source)
    md = mistune.create_markdown(escape=False, plugins=["strikethrough", "table", "url"])
    return replace_math(md(text), math)


# --------------------------------------------------------------------------- MathJax 3


_SKIP = {"script", "noscript", "style", "textarea", "pre", "code", "annotation", "annotation-xml"}
_VOID = {"br", "wbr", "img", "hr", "input", "meta", "link", "area", "base", "col", "embed", "source", "track"}


class _Strings(HTMLParser):
    """MathJax's ``HTMLDomStrings``: the page's text as the strings MathJax searches, each
    ending at an element's start or end; nothing from skipped tags or ignored classes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.strings: list[str] = []
        self.current: list[str] = []
        self.stack: list[bool] = [False]   # "ignored" for each open element

    def push(self):
        if self.current:
            self.strings.append("".join(self.current))
        self.current = []

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "wbr"):
            self.current.append("\n" if tag == "br" else "")
            return
        self.push()
        if tag in _VOID:
            return
        cls = dict(attrs).get("class") or ""
        ignored = self.stack[-1] or tag in _SKIP or bool(re.search(r"(?:^| )(?:mathjax_ignore)(?: |$)", cls))
        if re.search(r"(?:^| )(?:mathjax_process)(?: |$)", cls) and tag not in _SKIP:
            ignored = False
        self.stack.append(ignored)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        self.push()
        if len(self.stack) > 1:
            self.stack.pop()

    def handle_data(self, data):
        if not self.stack[-1]:
            self.current.append(data)


_DELIMS = {"$$": ("$$", True), "$": ("$", False), "\\(": ("\\)", False), "\\[": ("\\]", True)}
_START = re.compile(r"\$\$|\\\[|\\\(|\$|\\begin\s*\{([^}]*)\}|(\\[\\$])")


def _find_end(text: str, pos: int, close: str):
    pattern = re.compile(re.escape(close) + r"|\\.|[{}]")
    braces = 0
    for m in pattern.finditer(text, pos):
        if m.group(0) == close and braces == 0:
            return m.start(), m.end()
        if m.group(0) == "{":
            braces += 1
        elif m.group(0) == "}" and braces:
            braces -= 1
    return None


def find_tex(text: str) -> list[str]:
    """MathJax's ``FindTeX`` on one string: the TeX of each formula it would typeset."""
    out = []
    pos = 0
    while True:
        m = _START.search(text, pos)
        if m is None:
            return out
        if m.group(2):  # \$ or \\: an escaped character, not math
            pos = m.end()
            continue
        if m.group(1) is not None:
            close = "\\end{" + m.group(1) + "}"
            found = _find_end(text, m.end(), close)
            if found:
                out.append(text[m.start():found[1]])
                pos = found[1]
            else:
                pos = m.end()
            continue
        close, _ = _DELIMS[m.group(0)]
        found = _find_end(text, m.end(), close)
        if found:
            out.append(text[m.end():found[0]])
            pos = found[1]
        else:
            pos = m.end()


def typeset(html: str) -> list[str]:
    """The TeX of every formula MathJax would typeset on a page holding ``html``."""
    p = _Strings()
    p.feed(html)
    p.close()
    p.push()
    return [tex for s in p.strings for tex in find_tex(s)]


def lab_math(source: str) -> list[str]:
    """The formulas JupyterLab typesets for a markdown ``source``."""
    return typeset(render(source))


def intended_math(source: str) -> list[str]:
    """The spans the source delimits as math (what ``removeMath`` lifts out), delimiters
    removed, unescaped: what MathJax should typeset, and nothing else."""
    out = []
    for block in remove_math(source)[1]:
        b = block.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        for o, c in (("$$", "$$"), ("$", "$"), ("\\\\(", "\\\\)"), ("\\\\[", "\\\\]")):
            if b.startswith(o) and b.endswith(c) and len(b) >= len(o) + len(c):
                b = b[len(o):len(b) - len(c)]
                break
        out.append(b)
    return out


#: words of English prose: a formula holding them (outside \text{...}) swallowed a sentence
_PROSE = re.compile(r"(?<![\\A-Za-z])(?:and|at|the|of|each|against|per|with|for|is|to|server|cards?|or|about)"
                    r"(?![A-Za-z])")


def prose_in_tex(tex: str) -> list[str]:
    """Prose words found in ``tex`` outside ``\\text{}``, ``\\mathrm{}`` and ``\\operatorname{}``."""
    bare = re.sub(r"\\(?:text|mathrm|textrm|operatorname|mbox)\s*\{[^{}]*\}", " ", tex)
    return _PROSE.findall(bare)


def _report_math(source: str) -> list[str]:
    """The formulas the HTML report turns into MathML for a markdown source."""
    out = []
    for m in _report_html()._MATH.finditer(source):
        if m.group("code"):
            continue
        block = m.group("block") is not None
        tex = m.group("block") if block else m.group("inline")
        if _report_html()._mathml(tex, "block" if block else "inline") is not None:
            out.append(tex)
    return out


def math_problems(source: str) -> list[str]:
    """How a markdown source renders differently in JupyterLab and in the report, or a
    formula that swallowed prose or is not TeX."""
    lab, meant, report = lab_math(source), intended_math(source), _report_math(source)
    out = []
    if sorted(x.strip() for x in lab) != sorted(x.strip() for x in meant):
        out.append(f"JupyterLab typesets {lab!r}, the source delimits {meant!r}")
    if sorted(x.strip() for x in lab) != sorted(x.strip() for x in report):
        out.append(f"JupyterLab typesets {lab!r}, the report {report!r}")
    for tex in lab:
        if prose_in_tex(tex):
            out.append(f"a formula holds prose {prose_in_tex(tex)}: {tex!r}")
        if _report_html()._mathml(tex, "inline") is None:
            out.append(f"not TeX that the report can draw: {tex!r}")
    return out



def _report_html():
    from lpulab.report import html

    return html


__all__ = ["math_problems", "remove_math", "replace_math", "render", "typeset", "find_tex", "lab_math", "intended_math",
           "prose_in_tex"]
