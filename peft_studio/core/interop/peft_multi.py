"""Several adapters of a set as one folder in the layout PEFT writes for several adapters.

`PeftModel.save_pretrained(folder, selected_adapters=[...])` puts the adapter named "default" in the
folder itself and every other adapter in a subfolder named after it:

    folder/adapter_config.json, adapter_model.safetensors     the "default" adapter (if any)
    folder/support/adapter_config.json, ...                   adapter "support"
    folder/mood/adapter_config.json, ...                      adapter "mood"

Each (sub)folder is exactly what `hf_peft.export_peft` writes for one adapter (plus its
head.safetensors), so PEFT loads them with `PeftModel.from_pretrained(model, folder/name,
adapter_name=name)` or `load_adapter`, and the studio reads them back one by one with `import_peft`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..adapters.adapter_set import AdapterSet, SetAdapter
from ..bases.sites import longest_prefix
from ..data import TextDataset
from ..errors import AdapterFileError
from ..files import safe_io
from ..methods import get_method
from .hf_peft import ADAPTER_CONFIG, check_peft_export, export_peft, import_peft, read_peft

DEFAULT = "default"


def export_peft_set(adapters: AdapterSet, folder: str | Path, names: Sequence[str] | None = None) -> Path:
    """Write the named adapters (default: all) as PEFT does; refuses before writing if one cannot go."""
    folder = Path(folder)
    names = list(names) if names is not None else adapters.names()
    if not names:
        raise AdapterFileError("export PEFT format: the set has no adapters")
    for name in names:  # check them all first: a refused adapter leaves no half-written folder
        if name != DEFAULT:  # each other adapter becomes a subfolder named after it: never "../x"
            safe_io.plain_name(name, "adapter name", AdapterFileError)
            safe_io.file_inside(folder, name, AdapterFileError)
        with adapters.using(name) as member:
            try:
                check_peft_export(member)
            except AdapterFileError as exc:
                raise AdapterFileError(f"adapter {name!r}: {exc}") from None
    for name in names:
        with adapters.using(name) as member:
            export_peft(member, folder if name == DEFAULT else folder / name)
    return folder


def peft_adapter_folders(folder: str | Path) -> dict[str, Path]:
    """Adapter name -> its folder, as PEFT lays them out ("default" in the folder itself)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterFileError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    if (folder / ADAPTER_CONFIG).is_file():
        found[DEFAULT] = folder
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (sub / ADAPTER_CONFIG).is_file():
            found[sub.name] = sub
    if not found:
        raise AdapterFileError(f"{folder.name}: no {ADAPTER_CONFIG} in it or in its subfolders")
    return found


def import_peft_set(adapters: AdapterSet, folder: str | Path,
                    datasets: Mapping[str, TextDataset] | None = None) -> list[SetAdapter]:
    """Add every adapter of a PEFT multi-adapter folder to the set (names from the layout).

    Each needs its label names: from its head.safetensors, or from `datasets[name]` (which then
    also lets it train further)."""
    datasets = dict(datasets or {})
    added: list[SetAdapter] = []
    try:
        for name, path in peft_adapter_folders(folder).items():
            added.append(_import_one(adapters, name, path, datasets.get(name)))
    except BaseException:
        for member in added:
            adapters.remove(member.name)
        raise
    return added


def _import_one(adapters: AdapterSet, name: str, path: Path, dataset: TextDataset | None) -> SetAdapter:
    adapter = read_peft(path)
    method = get_method(adapter.method)
    base = adapters.base
    options = dict(adapter.options)
    if method.site_kinds and options.get("targets") is not None:  # the translator named its sites (IA3)
        options = method.options_for_sites(method.selected_sites(method.config(options), base), base, options)
    elif method.site_kinds:  # LoRA, ...: the sites their tensors sit on become targets
        by_path = {s.module_path: s for s in reversed(method.usable_sites(base))}  # a Linear before its input
        paths = list(dict.fromkeys(longest_prefix(key, ((p, p) for p in by_path), strict=True)
                                   or key.rsplit(".", 1)[0] for key in adapter.tensors))
        missing = [p for p in paths if p not in by_path]
        if missing:
            raise AdapterFileError(f"{path.name}: the adapter sits at {missing[0]}, which base "
                                   f"{adapters.base_name!r} has no {adapter.method} site for")
        options = method.options_for_sites([by_path[p] for p in paths], base, options)
    labels_only = dataset is None
    if dataset is None:
        if not adapter.head_labels:
            raise AdapterFileError(f"{path.name}: no head.safetensors with label names; give its dataset")
        labels = tuple(str(x) for x in adapter.head_labels)
        dataset = TextDataset(name, labels, labels, tuple(range(len(labels))), (), (), source=f"labels of {path.name}")
    member = adapters.add(name, adapter.method, options, dataset, labels_only=labels_only)
    try:
        import_peft(member, path)
    except BaseException:
        adapters.remove(name)
        raise
    return member
