"""Reading the weights of a TorchScript archive without running anything stored in it.

OpenAI publishes CLIP as TorchScript archives, and `torch.jit.load` runs code that the archive
carries (a module's `__setstate__`, for one): a crafted file given as a model path could hang the
run or do worse. The weights themselves are plain data. The archive is a zip in which
`<prefix>/data.pkl` pickles the module tree, each tensor a reference into a raw storage file
`<prefix>/data/<key>`, and the class definitions under `<prefix>/code/` declare which attributes
are parameters and buffers. Here data.pkl is unpickled with only the few globals that rebuild
tensors and containers, the archive's objects become inert records, the declarations are read as
text, and the result equals `torch.jit.load(path).state_dict()`.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import torch

__all__ = ["CheckpointError", "is_torchscript_archive", "read_torchscript_state_dict"]

_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# data.pkl and the class definitions are kilobytes in real archives; these caps bound what a
# crafted (possibly compressed) entry can make us hold in memory.
_PICKLE_LIMIT = 64 << 20
_CODE_LIMIT = 16 << 20
_CLASS_LINE = re.compile(r"class (\w+)(?:\((\w+)\))?:")
_DECLARATION = re.compile(r"\s+__(parameters|buffers)__ = (\[.*\])\s*$")
_FIX = (
    "Pass an OpenAI CLIP file (TorchScript archive or state dict); if this one was downloaded, "
    "delete it and fetch it again"
)


class CheckpointError(RuntimeError):
    """A file is neither a TorchScript archive nor a CLIP state dict, or it is refused as unsafe."""


class _Refusal(Exception):
    """What is wrong with an archive; `read_torchscript_state_dict` adds the file and the fix."""


class _StorageRef(NamedTuple):
    """A storage named in data.pkl (immutable, so the pickle cannot alter it after the fact)."""

    dtype: torch.dtype
    key: str
    numel: int


class _TensorRef(NamedTuple):
    """A tensor named in data.pkl: a view of a storage, read only when it is a state-dict entry."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _ScriptObject:
    """An object of a class defined in the archive: its attributes, and no code that could run."""

    qualified_name = ""
    attributes: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise _Refusal(
                f"an object of class {self.qualified_name} stores a custom state that only code "
                "in the archive (its __setstate__) can restore, and this loader runs none"
            )
        self.attributes = state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(_is_int(v) and v >= 0 for v in value)


def _tensor_ref(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any
) -> _TensorRef:
    """Stands in for torch._utils._rebuild_tensor_v2: checks the view and records it."""
    if not isinstance(storage, _StorageRef) or not isinstance(requires_grad, bool) or hooks:
        raise _Refusal("a tensor in data.pkl is not written as torch writes tensors")
    if not (_is_int(offset) and offset >= 0 and _int_tuple(size) and _int_tuple(stride)):
        raise _Refusal(f"a tensor in data.pkl has a malformed view: size {size}, stride {stride}")
    if len(size) != len(stride):
        raise _Refusal(f"a tensor in data.pkl has size {size} but stride {stride}")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise _Refusal(
                f"a tensor of size {size} (stride {stride}, offset {offset}) reaches beyond its "
                f"storage data/{storage.key} of {storage.numel} elements"
            )
    return _TensorRef(storage, offset, size, stride)


def _restore_type_tag(value: Any, type_str: Any) -> Any:
    """Stands in for torch.jit._pickle.restore_type_tag, which tags typed lists and dicts."""
    return value


def _typed_list(data: Any) -> Any:
    """Stands in for torch.jit._pickle.build_intlist and its siblings, which mark list types."""
    return data


_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor_ref,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    **{
        ("torch.jit._pickle", f"build_{kind}list"): _typed_list
        for kind in ("int", "double", "bool", "tensor")
    },
}


class _Unpickler(pickle.Unpickler):
    """Unpickles data.pkl into plain containers, `_TensorRef`s and `_ScriptObject`s only."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self._classes: dict[str, type[_ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(
                    "ScriptObject", (_ScriptObject,), {"qualified_name": qualified}
                )
            return self._classes[qualified]
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]  # a dtype: names the storage type, cannot be called
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise _Refusal(
            f"its data.pkl names {module}.{name}, which could run code when loaded; only "
            "tensors, plain containers and the archive's own classes (kept inert) are read"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and pid[1] in _DTYPES.values()
            and isinstance(pid[2], str)
            and isinstance(pid[3], str)
            and _is_int(pid[4])
            and pid[4] >= 0
        ):
            raise _Refusal(f"data.pkl refers to {pid!r}, which is not a storage")
        return _StorageRef(pid[1], pid[2], pid[4])


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    """The top folder of a TorchScript archive (the one holding constants.pkl), else None."""
    for name in archive.namelist():
        prefix, _, rest = name.partition("/")
        if rest == "constants.pkl":
            return prefix
    return None


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether `path` is a TorchScript archive (as torch tells them from torch.save files)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _archive_prefix(archive) is not None
    except (zipfile.BadZipFile, OSError):
        return False


class _Archive:
    """One open archive: bounded reads of its entries, its class declarations, its storages."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, size: int) -> None:
        self.zip = archive
        self.prefix = prefix
        self.storage_budget = size  # storages are stored uncompressed, so they fit in the file
        self.storages: dict[str, torch.Tensor] = {}
        self.declarations: dict[str, dict[str, dict[str, Any]]] = {}

    def read(self, name: str, limit: int) -> bytes:
        try:
            with self.zip.open(f"{self.prefix}/{name}") as entry:
                data = entry.read(limit + 1)
        except KeyError:
            raise _Refusal(f"it has no {name}") from None
        if len(data) > limit:
            raise _Refusal(f"its {name} is larger than {limit >> 20} MiB")
        return data

    def declaration(self, qualified_name: str) -> dict[str, Any]:
        """`{"module": bool, "parameters": [...], "buffers": [...]}` of a class in code/."""
        module, _, name = qualified_name.rpartition(".")
        if module not in self.declarations:
            source = self.read(f"code/{module.replace('.', '/')}.py", _CODE_LIMIT)
            self.declarations[module] = _parse_declarations(source.decode("utf-8", "replace"))
        found = self.declarations[module].get(name)
        if found is None:
            raise _Refusal(f"class {qualified_name} is not defined under code/")
        return found

    def tensor(self, ref: _TensorRef) -> torch.Tensor:
        flat = self.storages.get(ref.storage.key)
        if flat is None:
            flat = self.storages[ref.storage.key] = self._read_storage(ref.storage)
        if flat.dtype != ref.storage.dtype or flat.numel() != ref.storage.numel:
            raise _Refusal(f"data/{ref.storage.key} is named with two different types or sizes")
        return flat.as_strided(ref.size, ref.stride, ref.offset)

    def _read_storage(self, ref: _StorageRef) -> torch.Tensor:
        name = f"{self.prefix}/data/{ref.key}"
        nbytes = ref.numel * torch.empty(0, dtype=ref.dtype).element_size()
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise _Refusal(f"it has no storage data/{ref.key}") from None
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != nbytes:
            raise _Refusal(
                f"its storage data/{ref.key} holds {info.file_size} bytes (compression "
                f"{info.compress_type}), not the {nbytes} uncompressed bytes its tensors need"
            )
        self.storage_budget -= nbytes
        if self.storage_budget < 0:
            raise _Refusal("its storages add up to more bytes than the file holds")
        flat = torch.empty(nbytes, dtype=torch.uint8)
        view = memoryview(flat.numpy())
        with self.zip.open(info) as entry:  # checks the entry's CRC at the end
            filled = 0
            while filled < nbytes:
                got = entry.readinto(view[filled:])
                if not got:
                    raise _Refusal(f"its storage data/{ref.key} is truncated")
                filled += got
        return flat.view(ref.dtype)


def _parse_declarations(source: str) -> dict[str, dict[str, Any]]:
    """Per class in a code/ file: whether it is a Module, and its declared parameters/buffers.

    The file is only scanned as text (`class X(Module):` and `__parameters__ = [...]` lines)."""
    classes: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in source.splitlines():
        header = _CLASS_LINE.match(line)
        if header:
            current = {"module": header[2] == "Module", "parameters": [], "buffers": []}
            classes[header[1]] = current
            continue
        declared = _DECLARATION.match(line)
        if declared and current is not None:
            try:
                names = ast.literal_eval(declared[2])
            except (ValueError, SyntaxError):
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise _Refusal(f"a class declares {declared[1]} that are not a list of names")
            current[declared[1]] = names
    return classes


def _state_dict(archive: _Archive, root: Any) -> OrderedDict[str, torch.Tensor]:
    """Parameters then buffers of each module, depth first, as `nn.Module.state_dict` orders."""
    if not isinstance(root, _ScriptObject):
        raise _Refusal(f"its data.pkl holds a {type(root).__name__}, not a module")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    seen: set[int] = set()
    stack: list[tuple[str, _ScriptObject]] = [("", root)]
    while stack:
        prefix, module = stack.pop()
        if id(module) in seen:
            raise _Refusal(f"module {module.qualified_name} occurs twice in the module tree")
        seen.add(id(module))
        declared = archive.declaration(module.qualified_name)
        attributes = module.attributes or {}
        for kind in ("parameters", "buffers"):
            for name, value in attributes.items():
                if name not in declared[kind] or value is None:
                    continue
                if not isinstance(value, _TensorRef):
                    raise _Refusal(f"{kind[:-1]} {prefix}{name} is a {type(value).__name__}")
                state[prefix + name] = archive.tensor(value)
        children = [
            (f"{prefix}{name}.", value)
            for name, value in attributes.items()
            if isinstance(value, _ScriptObject)
            and archive.declaration(value.qualified_name)["module"]
        ]
        stack.extend(reversed(children))
    return state


def read_torchscript_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """The state dict `torch.jit.load(path).state_dict()` returns (CPU tensors), read without
    running anything from the archive. Anything else in its pickle raises `CheckpointError`."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zipped:
            prefix = _archive_prefix(zipped)
            if prefix is None:
                raise _Refusal("it is a zip file but not a TorchScript archive (no constants.pkl)")
            archive = _Archive(zipped, prefix, path.stat().st_size)
            if f"{prefix}/byteorder" in zipped.namelist():
                order = archive.read("byteorder", 16).decode("ascii", "replace").strip()
                if order != sys.byteorder:
                    raise _Refusal(f"it was written on a {order}-endian machine")
            data = archive.read("data.pkl", _PICKLE_LIMIT)
            try:
                root = _Unpickler(io.BytesIO(data)).load()
            except _Refusal:
                raise
            except Exception as err:  # any malformed pickle, whatever the opcode that broke
                raise _Refusal(f"its data.pkl is damaged ({type(err).__name__}: {err})") from err
            return _state_dict(archive, root)
    except _Refusal as refusal:
        raise CheckpointError(f"{path} is refused: {refusal}. {_FIX}") from refusal.__cause__
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path} is a damaged zip file ({err}). {_FIX}") from err
