"""Modelfile parsing, rendering and round-trips."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.errors import ModelfileError
from ollamapy.modelfile import Command, Instruction, Message, Modelfile, decode, parse

TEMPLATE = """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

DOCS_EXAMPLE = """FROM llama3.2
# sets the temperature to 1 [higher is more creative, lower is more coherent]
PARAMETER temperature 1
# sets the context window size to 4096
PARAMETER num_ctx 4096

# sets a custom system message to specify the behavior of the chat assistant
SYSTEM You are Mario from super mario bros, acting as an assistant.
"""


def test_docs_example() -> None:
    modelfile = parse(DOCS_EXAMPLE)
    assert modelfile.from_ == "llama3.2"
    assert modelfile.parameters == {"temperature": 1.0, "num_ctx": 4096}
    assert modelfile.system == "You are Mario from super mario bros, acting as an assistant."
    assert modelfile.template is None
    assert [c.line for c in modelfile.commands] == [1, 3, 5, 8]


@pytest.mark.parametrize(
    ("text", "accessor", "expected"),
    [
        ("from llama3.2", "from_", "llama3.2"),
        ("FrOm  \t llama3.2  ", "from_", "llama3.2"),
        ("FROM ./model.gguf", "from_", "./model.gguf"),
        ('FROM "./my model.gguf"', "from_", "./my model.gguf"),
        ("FROM a\nFROM b", "froms", ["a", "b"]),
        (f'FROM a\nTEMPLATE """{TEMPLATE}"""', "template", TEMPLATE),
        ('FROM a\nTEMPLATE """  padded  """', "template", "  padded  "),
        ('FROM a\nTEMPLATE """one"""\nTEMPLATE two', "template", "two"),
        ('FROM a\nSYSTEM "multi\nline"', "system", "multi\nline"),
        ('FROM a\nSYSTEM ""', "system", ""),
        ('FROM a\nSYSTEM """"""', "system", ""),
        ('FROM a\nSYSTEM "say "hi" now"', "system", 'say "hi" now'),
        ('FROM a\nSYSTEM """a """ b"""', "system", 'a """ b'),
        ('FROM a\nSYSTEM """ends with quote""""', "system", 'ends with quote"'),
        ('FROM a\nSYSTEM """x"""   \t\nFROM b', "system", "x"),
        ("FROM a\nSYSTEM not # a comment", "system", "not # a comment"),
        ("FROM a\nADAPTER ./one.gguf\nadapter /two", "adapters", ["./one.gguf", "/two"]),
        ('FROM a\nLICENSE MIT\nLICENSE """\nApache\n"""', "license", ["MIT", "\nApache\n"]),
        ("FROM a", "license", []),
        ("FROM a\nREQUIRES 0.14.0", "requires", "0.14.0"),
        ("FROM a\nRENDERER qwen3\nPARSER qwen3", "parser", "qwen3"),
        (
            'FROM a\nMESSAGE user Is Toronto in Canada?\nmessage ASSISTANT """yes"""',
            "messages",
            [Message("user", "Is Toronto in Canada?"), Message("assistant", "yes")],
        ),
        ("\ufeffFROM a\r\nSYSTEM s\r\n", "system", "s"),
        ('FROM a\r\nSYSTEM """x\r\ny"""\r\n', "system", "x\ny"),
    ],
    ids=[
        "lowercase-keyword",
        "mixed-case-and-blanks",
        "relative-path",
        "quoted-path",
        "several-from",
        "triple-quoted-multiline",
        "triple-quoted-keeps-inner-blanks",
        "last-template-wins",
        "double-quoted-multiline",
        "empty-double-quoted",
        "empty-triple-quoted",
        "inner-double-quotes",
        "inner-triple-quotes-mid-line",
        "value-ending-in-quote",
        "trailing-blanks-after-close",
        "hash-inside-value",
        "adapters-accumulate",
        "several-licenses",
        "no-license",
        "requires",
        "renderer-and-parser",
        "messages",
        "bom-and-crlf",
        "crlf-inside-quotes",
    ],
)
def test_accessors(text: str, accessor: str, expected: Any) -> None:
    assert getattr(parse(text), accessor) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["PARAMETER temperature 0.7"], {"temperature": 0.7}),
        (["PARAMETER TOP_K 40"], {"top_k": 40}),
        (["PARAMETER use_mmap false"], {"use_mmap": False}),
        (
            ['PARAMETER stop "<|im_end|>"', "PARAMETER stop <|im_start|>"],
            {"stop": ["<|im_end|>", "<|im_start|>"]},
        ),
        (["PARAMETER seed 1", "PARAMETER seed 2"], {"seed": 2}),
        (['PARAMETER stop "  spaced "'], {"stop": ["  spaced "]}),
        (
            ["PARAMETER mirostat 2", "PARAMETER penalize_newline maybe", "PARAMETER top_k 5"],
            {"top_k": 5},
        ),
    ],
    ids=[
        "float",
        "name-case-folded",
        "bool",
        "stop-accumulates",
        "last-wins",
        "stop-blanks",
        "removed-dropped",
    ],
)
def test_parameters(lines: list[str], expected: dict[str, Any]) -> None:
    assert parse("\n".join(["FROM a", *lines])).parameters == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PARAMETER temperature 1", "no FROM line"),
        ("# only a comment\n", "no FROM line"),
        ("", "no FROM line"),
        ("FROM a\n\nPARAMETER temperature hot", "line 3: invalid float value 'hot'"),
        ("FROM a\nPARAMETER num_ctx 4.5", "line 2: invalid integer value '4.5'"),
        ("FROM a\nPARAMETER use_mmap maybe", "line 2: invalid boolean value 'maybe'"),
        ("FROM a\nPARAMETER bogus 1", "line 2: unknown parameter 'bogus'"),
        ("FROM a\nPARAMETER numa true", "line 2: unknown parameter 'numa'"),
        ("FROM a\nPARAMETER tfs_z 1.0", "line 2: unknown parameter 'tfs_z'"),
        ("FROM a\nPARAMETER te-mp 1", "line 2: invalid parameter name 'te-mp'"),
        ("FROM a\nPARAMETER temperature", "line 2: PARAMETER needs a value"),
        ("FROM a\nPARAMETER\n", "line 2: PARAMETER needs a name and a value"),
        ("FROM a\nFOO bar", "line 2: unknown instruction 'FOO'"),
        ("FROM a\n  INSTRUCTIONS here", "line 2: unknown instruction 'INSTRUCTIONS'"),
        ("FROM:a", "line 1: unknown instruction 'FROM:a'"),
        ("FROM", "line 1: FROM needs a value"),
        ("FROM a\nSYSTEM   \nx", "line 2: SYSTEM needs a value"),
        ('FROM a\n\nTEMPLATE """never closed\nstill open', 'line 3: unterminated """ value'),
        ('FROM a\nSYSTEM "open', 'line 2: unterminated " value'),
        ('FROM a\nSYSTEM """x""" trailing', 'line 2: unterminated """ value'),
        ("FROM a\nMESSAGE tool hi", 'line 2: message role must be one of "system"'),
        ("FROM a\nMESSAGE user", "line 2: MESSAGE needs a value"),
    ],
    ids=[
        "missing-from",
        "comment-only",
        "empty",
        "bad-float-names-line",
        "bad-int",
        "bad-bool",
        "unknown-parameter",
        "numa-removed-but-not-deprecated",
        "tfs_z-removed-but-not-deprecated",
        "bad-parameter-name",
        "parameter-without-value",
        "parameter-without-name",
        "unknown-instruction",
        "unknown-indented-instruction",
        "keyword-glued-to-punctuation",
        "from-without-value",
        "blank-value",
        "unterminated-triple",
        "unterminated-double",
        "text-after-closing-quotes",
        "bad-role",
        "message-without-content",
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)
    assert caught.value.status_code == 400


def test_render_matches_ollama_show_form() -> None:
    modelfile = parse(
        "FROM /models/blobs/sha256-00e1\n"
        f'TEMPLATE """{TEMPLATE}"""\n'
        "PARAMETER num_ctx 4096\n"
        "PARAMETER stop <|im_start|>\n"
        "PARAMETER stop <|im_end|>\n"
        "SYSTEM You are helpful.\n"
        "LICENSE MIT\n"
        "MESSAGE user hi\n"
    )
    assert modelfile.show("smollm2:latest") == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this one, replace the FROM line with:\n"
        "# FROM smollm2:latest\n"
        "\n"
        "FROM /models/blobs/sha256-00e1\n"
        f'TEMPLATE """{TEMPLATE}"""\n'
        "PARAMETER num_ctx 4096\n"
        'PARAMETER stop "<|im_start|>"\n'
        'PARAMETER stop "<|im_end|>"\n'
        'SYSTEM """You are helpful."""\n'
        'LICENSE """MIT"""\n'
        'MESSAGE user """hi"""\n'
    )


AWKWARD_VALUES = [
    "",
    " leading and trailing ",
    "multi\nline\n",
    'ends with "',
    '"starts with quote',
    '"',
    '""',
    '"""',
    'line ends in quote"\nmore',
    'has """ inside\nmore',
    '"""x\nstarts with triple',
    "tab\there",
    "# hash",
    "\n\nleading newlines",
    "unicode ✓ 模型",
]


@pytest.mark.parametrize("value", AWKWARD_VALUES, ids=[repr(v) for v in AWKWARD_VALUES])
@pytest.mark.parametrize(
    "instruction",
    [Instruction.SYSTEM, Instruction.TEMPLATE, Instruction.LICENSE, Instruction.ADAPTER],
    ids=str,
)
def test_round_trip_awkward_values(instruction: Instruction, value: str) -> None:
    modelfile = Modelfile((Command(Instruction.FROM, "a"), Command(instruction, value)))
    assert parse(str(modelfile)) == modelfile


@pytest.mark.parametrize("value", AWKWARD_VALUES, ids=[repr(v) for v in AWKWARD_VALUES])
def test_round_trip_stop_and_message(value: str) -> None:
    modelfile = Modelfile(
        (
            Command(Instruction.FROM, "a"),
            Command.parameter("stop", value),
            Command.message("assistant", value),
        )
    )
    assert parse(str(modelfile)) == modelfile


def test_round_trip_docs_example() -> None:
    modelfile = parse(DOCS_EXAMPLE)
    assert parse(str(modelfile)) == modelfile
    assert parse(modelfile.show("x")) == modelfile


def test_unwritable_value_is_an_error() -> None:
    value = 'a line ending in triple quotes"""\nand more'
    modelfile = Modelfile((Command(Instruction.FROM, "a"), Command(Instruction.SYSTEM, value)))
    with pytest.raises(ModelfileError, match="cannot be written"):
        str(modelfile)


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (0.7, "0.7"), (4096, "4096"), ("x", "x")],
    ids=["true", "false", "float", "int", "str"],
)
def test_command_parameter_formats_typed_values(value: object, text: str) -> None:
    assert Command.parameter("k", value).value == text


def test_modelfile_requires_from() -> None:
    with pytest.raises(ModelfileError, match="no FROM line"):
        Modelfile((Command(Instruction.SYSTEM, "x"),))


def test_line_numbers_do_not_affect_equality() -> None:
    assert parse("\n\nFROM a") == parse("FROM a")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"FROM a\n", "FROM a\n"),
        (b"\xef\xbb\xbfFROM a", "FROM a"),
        ("FROM a".encode("utf-16"), "FROM a"),
        ("FROM a".encode("utf-16-be").join([b"\xfe\xff", b""]), "FROM a"),
    ],
    ids=["utf8", "utf8-bom", "utf16-le-bom", "utf16-be-bom"],
)
def test_decode(data: bytes, expected: str) -> None:
    assert decode(data) == expected


def test_decode_rejects_invalid_utf8() -> None:
    with pytest.raises(ModelfileError, match="not valid text"):
        decode(b"FROM \xff\xfe\xfa")


def test_build_uses_ollama_show_order() -> None:
    modelfile = Modelfile.build(
        "/blobs/sha256-00",
        adapters=["/blobs/sha256-01"],
        template="{{ .Prompt }}",
        system="Be brief.",
        parameters={"stop": ["<|im_end|>", "<|im_start|>"], "temperature": 0.2},
        license=["MIT"],
        messages=[Message("user", "hi")],
    )
    assert str(modelfile) == (
        "FROM /blobs/sha256-00\n"
        "ADAPTER /blobs/sha256-01\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        'SYSTEM """Be brief."""\n'
        'PARAMETER stop "<|im_end|>"\n'
        'PARAMETER stop "<|im_start|>"\n'
        "PARAMETER temperature 0.2\n"
        'LICENSE """MIT"""\n'
        'MESSAGE user """hi"""\n'
    )
    assert parse(str(modelfile)) == modelfile
    assert modelfile.parameters == {"stop": ["<|im_end|>", "<|im_start|>"], "temperature": 0.2}
