"""Builds the project's small causal LMs: deterministic, cached by content hash, loadable by vLLM.

Each model is a 2-layer Llama (hidden 128, 2 heads of 64, 1 KV head: vLLM's CPU attention needs
head_dim 64) with a character-level tokenizer over the addition task's vocabulary, trained with a
fixed seed on that task (``kubetensor.models.task``). Qualities differ only in training steps:

    good       2000 steps   (answers nearly every held-out sum)
    brief       300 steps   (answers some)
    untrained     0 steps   (random weights: junk)

One training run produces every quality: the briefer models are snapshots of the same run (the
learning rate is constant, so a 300-step snapshot is exactly what a 300-step run would give). Each
model lands in ``<cache>/models/<quality>-<hash>/`` where the hash covers this file's source and the
recipe, so changing either rebuilds and nothing stale is reused. Called by ``kubetensor models build``,
the test harness and the devnet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubetensor.core.paths import cache_root
from kubetensor.models import task


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a model's weights."""

    steps: int
    seed: int = 20261126
    batch_size: int = 128
    learning_rate: float = 1e-3
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 2
    heads: int = 2
    kv_heads: int = 1


QUALITIES: dict[str, Recipe] = {
    "good": Recipe(steps=2000),
    "brief": Recipe(steps=300),
    "untrained": Recipe(steps=0),
}


@dataclass(frozen=True)
class BuiltModel:
    quality: str
    path: Path
    steps: int
    digest: str
    build_seconds: float


Progress = Callable[[str], None]


def digest(quality: str) -> str:
    """Content hash of the recipe and of the code that turns it into weights."""
    recipe = QUALITIES[quality]
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(Path(task.__file__).read_bytes())
    # The shared training run means every quality's weights depend on the same seed and shape.
    h.update(json.dumps({"quality": quality, "recipe": asdict(recipe)}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def model_dir(quality: str) -> Path:
    return cache_root() / "models" / f"{quality}-{digest(quality)}"


def is_built(quality: str) -> bool:
    return (model_dir(quality) / "kubetensor-model.json").is_file()


def build(qualities: list[str] | None = None, *, progress: Progress | None = None) -> dict[str, BuiltModel]:
    """Build (or find in the cache) the models of ``qualities`` (default: all); return where they are."""
    wanted = list(QUALITIES) if qualities is None else qualities
    unknown = [q for q in wanted if q not in QUALITIES]
    if unknown:
        raise ValueError(f"unknown model quality {unknown}; known: {sorted(QUALITIES)}")
    say = progress or (lambda _msg: None)
    root = cache_root() / "models"
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".build.lock"):
        missing = [q for q in wanted if not is_built(q)]
        if missing:
            _train_and_save(missing, say=say)
    return {q: _load_manifest(q) for q in wanted}


def _load_manifest(quality: str) -> BuiltModel:
    path = model_dir(quality)
    meta = json.loads((path / "kubetensor-model.json").read_text())
    return BuiltModel(
        quality=quality,
        path=path,
        steps=meta["steps"],
        digest=meta["digest"],
        build_seconds=meta["build_seconds"],
    )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_tokenizer() -> Any:
    """A character-level tokenizer over the task's vocabulary that adds BOS itself (vLLM relies on it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(task.VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<pad>"
    )


def _config(recipe: Recipe) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(task.VOCAB),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=64,
        bos_token_id=task.VOCAB.index("<s>"),
        eos_token_id=task.VOCAB.index("</s>"),
        pad_token_id=task.VOCAB.index("<pad>"),
        tie_word_embeddings=False,
    )


def _encode_batch(problems: list[task.Problem]) -> tuple[Any, Any]:
    """Input ids and labels for teacher forcing; the loss covers only the answer and EOS."""
    import torch

    ids_of = {tok: i for i, tok in enumerate(task.VOCAB)}
    rows, labels = [], []
    for p in problems:
        prompt = [ids_of["<s>"], *(ids_of[c] for c in p.prompt)]
        answer = [*(ids_of[c] for c in p.answer), ids_of["</s>"]]
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(len(r) for r in rows)
    pad = ids_of["<pad>"]
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return input_ids, label_ids


def _train_and_save(qualities: list[str], *, say: Progress) -> None:
    import torch
    from transformers import LlamaForCausalLM

    recipes = {q: QUALITIES[q] for q in qualities}
    shapes = {
        json.dumps({k: v for k, v in asdict(r).items() if k != "steps"}, sort_keys=True)
        for r in recipes.values()
    }
    if len(shapes) != 1:
        raise ValueError("qualities built in one run must share every recipe field but steps")
    base = next(iter(recipes.values()))
    torch.manual_seed(base.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = LlamaForCausalLM(_config(base))  # type: ignore[no-untyped-call]
    tokenizer = make_tokenizer()
    problems = task.training_problems()
    gen = torch.Generator().manual_seed(base.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=base.learning_rate)
    snapshots = sorted({r.steps: q for q, r in recipes.items()}.items())
    started = time.monotonic()
    step = 0
    model.train()
    for target_steps, _ in snapshots:
        while step < target_steps:
            idx = torch.randint(len(problems), (base.batch_size,), generator=gen).tolist()
            input_ids, labels = _encode_batch([problems[i] for i in idx])
            loss = model(input_ids=input_ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 250 == 0:
                say(
                    f"training step {step}/{snapshots[-1][0]} loss {loss.item():.3f} "
                    f"({time.monotonic() - started:.0f}s)"
                )
        for q, r in recipes.items():
            if r.steps == target_steps:
                _save(model, tokenizer, quality=q, seconds=time.monotonic() - started)
                say(f"saved {q} ({r.steps} steps) to {model_dir(q)}")


def _save(model: Any, tokenizer: Any, *, quality: str, seconds: float) -> None:
    final = model_dir(quality)
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    meta = {
        "quality": quality,
        "task": "addition-reversed",
        "steps": QUALITIES[quality].steps,
        "digest": digest(quality),
        "build_seconds": round(seconds, 2),
        "recipe": asdict(QUALITIES[quality]),
    }
    (tmp / "kubetensor-model.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
