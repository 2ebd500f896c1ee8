"""``loopkit plugin new``: an installable ``loopkit-<kind>-<name>`` package that works as generated.

The package has a pyproject with the ``loopkit`` entry point, one component class with its
``Params``, a README, and a test that runs the tiny two-round loop with the component through the
``loopkit_run`` fixture (``loopkit.testing``, a pytest plugin). Edit the class; keep the test green.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from loopkit.errors import LoopkitError

KINDS = ("selector", "task", "model", "teacher", "trainer")


@dataclass(frozen=True)
class _Kind:
    hook: str
    imports: str  # the module's imports (only from loopkit's public API, plus numpy)
    body: str  # the component class, with {cls} and {name}
    override: str  # what puts it in the test recipe ("|" between several --set values)
    check: str = ""  # what the generated loop test asserts beyond "it ran", in the component's terms


# Selectors and tasks show the usual starting point; models and trainers show the whole base interface.
_COMPONENTS = {
    "selector": _Kind("register_selectors", "import numpy as np\n\nfrom loopkit import Field, Params, ScoreSelector, hookimpl", '''
class {cls}(ScoreSelector):
    """Picks the seeds with the highest own loss, raised to ``power`` (edit ``score``; or subclass
    ``Selector`` and write ``select(self, signals, pool_size, m, rng, history=())``)."""

    needs = frozenset({{"own_loss"}})
    signal = "own_loss"

    class Params(Params):
        power: float = Field(1.0, gt=0, description="an example parameter, validated from the recipe")

    def score(self, signals):
        return np.asarray(signals["own_loss"], dtype=np.float64) ** self.params.power
''', "selector.name={name}",
        '# it picked 6 seeds in each round, and the reasoning-gym teacher calls once for each\n'
        '    assert result.rows[-1]["teacher_calls"] == 12'),
    "task": _Kind("register_tasks", "import numpy as np\n\nfrom loopkit import Field, Params, Sample, Task, TaskData, hookimpl", '''
class {cls}(Task):
    """Two-number sums (edit ``load`` to read your data; ``check`` decides what is correct)."""

    class Params(Params):
        pool_size: int = Field(16, ge=1)
        test_size: int = Field(8, ge=1)

    def load(self, seed):
        rng = np.random.default_rng(seed)
        pairs = rng.integers(0, 50, size=(self.params.pool_size + self.params.test_size, 2))
        samples = [Sample.create(f"What is {{a}} + {{b}}?", str(a + b), final=str(a + b)) for a, b in pairs.tolist()]
        return TaskData(pool=samples[: self.params.pool_size], test=samples[self.params.pool_size :])

    def check(self, sample, completion):
        return self.extract(completion) == sample.final
''', "task={{name: {name}}}|teacher={{name: hf, params: {{model: {{name: tiny, params: {{hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}}}}, max_new_tokens: 8}}}}",
        "task = {cls}()  # its own reference answers count as correct\n"
        "    assert all(task.check(s, s.answer) for s in task.load(0).test)"),
    "model": _Kind("register_models", "from loopkit import Field, ModelSource, Params, hookimpl", '''
class {cls}(ModelSource):
    """A small Llama with a character-level tokenizer, built in code (edit ``load`` to build or load
    your model, e.g. with ``AutoModelForCausalLM.from_pretrained``)."""

    class Params(Params):
        hidden_size: int = Field(32, ge=8, description="an example parameter, validated from the recipe")
        layers: int = Field(1, ge=1)

    def load(self, seed):
        """``(model, tokenizer)``, the model in eval mode; called again whenever the loop needs the base model."""
        import string

        import torch  # heavy libraries are imported where they are used: `loopkit --help` stays fast
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

        vocab = {{token: i for i, token in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *string.printable])}}
        characters = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        characters.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        characters.decoder = decoders.Fuse()
        characters.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=characters, pad_token="<pad>", bos_token="<bos>",
                                            eos_token="<eos>", unk_token="<unk>", padding_side="left")
        p = self.params
        config = LlamaConfig(vocab_size=len(vocab), hidden_size=p.hidden_size, num_hidden_layers=p.layers,
                             num_attention_heads=2, num_key_value_heads=2, intermediate_size=2 * p.hidden_size,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
        with torch.random.fork_rng(devices=[]):  # the same seed, the same weights
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        return model.eval(), tokenizer
''', "student={{name: {name}}}"),
    "teacher": _Kind("register_teachers", "from loopkit import Field, Generation, Params, Sample, Teacher, hookimpl", '''
class {cls}(Teacher):
    """Restates each seed as a new question with the seed's reference answer (edit ``generate``)."""

    class Params(Params):
        prefix: str = Field("Once more:", description="put before each seed question")

    def generate(self, seeds, round_no, random_seed):
        out = []
        for s in seeds:
            if s.answer is None:
                out.append(Generation(s, None, "the seed has no reference answer", calls=1))
                continue
            new = Sample.create(f"{{self.params.prefix}} {{s.question}}", s.answer, final=s.final,
                                source="{name}", seed_id=s.id, round=round_no)
            out.append(Generation(s, new, calls=1))
        return out
''', "teacher.name={name}", 'assert result.rows[-1]["samples"] > 0  # the loop kept samples it wrote'),
    "trainer": _Kind("register_trainers", "from loopkit import Field, Params, Trainer, hookimpl", '''
class {cls}(Trainer):
    """A plain PyTorch loop, AdamW on each completion's loss given its prompt, one example at a time
    (edit ``train``: TRL, accelerate or a loop of your own all fit here)."""

    class Params(Params):
        epochs: int = Field(1, ge=1, description="passes over the synthetic data")
        learning_rate: float = Field(3e-3, gt=0)

    def train(self, model, tokenizer, prompts, completions, output_dir, seed, stage):
        """Fine-tune ``model`` on (rendered prompt, completion) pairs and return it with metrics. Save it in
        ``output_dir / "model"``: resuming a run and ``loopkit export`` read it there."""
        import torch  # heavy libraries are imported where they are used: `loopkit --help` stays fast

        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.params.learning_rate)
        stage.set_total(self.params.epochs * len(prompts))
        losses = []
        model.train()
        for _ in range(self.params.epochs):
            for prompt, completion in zip(prompts, completions):
                prompt_ids = tokenizer(prompt)["input_ids"]
                answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
                labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids], device=model.device)  # the answer's loss only
                loss = model(input_ids=ids, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                stage.advance(1)
        model.eval()
        self.save(model, tokenizer, output_dir / "model")
        return model, {{"examples": len(prompts), "steps": len(losses), "train_loss": sum(losses) / max(len(losses), 1)}}
''', "trainer={{name: {name}}}", "result.run_dir.model_dir(2)  # raises unless round 2 saved the student where resume and export read it"),
}

_MODULE = '''"""loopkit {kind} '{name}': {summary}"""

from __future__ import annotations

{imports}

{body}

@hookimpl
def {hook}(register):
    register("{name}", {cls})
'''

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "loopkit {kind}: {name}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["loopkit>=0.1", "numpy>=1.24"]

[project.optional-dependencies]
test = ["pytest>=8"]

# loopkit finds the component through this entry point (group "loopkit").
[project.entry-points.loopkit]
{name} = "{package}"

[tool.setuptools.packages.find]
where = ["src"]
'''

_README = '''# {dist}

A loopkit {kind}, `{name}`. Install it and use it by name in a recipe:

```
pip install -e .
loopkit list-plugins            # shows {kind} {name} from {dist}
loopkit run recipe.yaml --set {override}
```

Test it (a two-round loop on loopkit's tiny offline model, through the `loopkit_run` fixture):

```
pip install -e ".[test]" && pytest
```

A new selector should come with evidence: `loopkit compare recipe.yaml --selectors {name},random --seeds 3`.
'''

_TEST = '''"""The {kind} runs by name in loopkit's tiny two-round loop (an offline model built in code; seconds on a CPU)."""

from {package} import {cls}


def test_params_have_defaults():
    assert {cls}.Params()


def test_runs_in_a_loop(loopkit_run):
    result = loopkit_run({overrides})
    assert len(result.accuracies) == 3  # round 0 (the untrained student), then rounds 1 and 2
    {check}
'''


def new_plugin(kind: str, name: str, parent: Path) -> Path:
    """Write ``parent/loopkit-<kind>-<name>/`` and return it."""
    if kind not in KINDS:
        raise LoopkitError(f"--kind {kind}: not a component kind; choose one of {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise LoopkitError(f"--name {name}: use lowercase letters, digits and single dashes, starting with a letter (e.g. my-selector)")
    dist = f"loopkit-{kind}-{name}"
    package = dist.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()
    root = parent / dist
    if root.exists():
        raise LoopkitError(f"{root} already exists; choose another --name or --dir")
    spec = _COMPONENTS[kind]
    overrides = spec.override.format(name=name).split("|")  # a task needs an LLM teacher: its own tiny one here
    values = {"kind": kind, "name": name, "dist": dist, "package": package, "cls": cls, "hook": spec.hook,
              "override": " --set ".join(f"'{o}'" for o in overrides), "overrides": ", ".join(repr(o) for o in overrides)}
    body = spec.body.format(**values)
    test = _TEST.format(check=spec.check.format(**values), **values).replace("\n    \n", "\n")  # no check: no blank line
    files = {
        "pyproject.toml": _PYPROJECT.format(**values),
        "README.md": _README.format(**values),
        f"src/{package}/__init__.py": _MODULE.format(summary=" ".join(body.split('"""')[1].split()).split(" (")[0] + ".", imports=spec.imports, body=body, **values),
        f"tests/test_{package}.py": test,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
