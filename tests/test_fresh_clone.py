"""scripts/fresh_clone.py: the log a timing commits names no machine's folders and loses no line of the command."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("fresh_clone", ROOT / "scripts" / "fresh_clone.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_stored_log_drops_pip_index_warnings_and_the_clone_path_only():
    f = _script()
    clone = Path("/somewhere/fresh9")
    text = ("WARNING: Location 'file:///index/simple/torch/' is ignored: it is neither a file nor a directory.\n"
            "Collecting torch\n"
            "  /somewhere/fresh9/tests/test_data.py:101: UserWarning: 1 unreadable image(s)\n"
            "WARNING: something else pip says\n")
    out = f.stored_log(text, clone).splitlines()
    assert out[0].startswith("[1 lines of pip's")
    assert out[1:] == ["Collecting torch", "  <clone>/tests/test_data.py:101: UserWarning: 1 unreadable image(s)",
                       "WARNING: something else pip says"]
