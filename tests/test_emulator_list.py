"""The list of running emulators (what `spikeflash devices` shows) lives in a per-user,
owner-only folder; writing it never follows a planted symlink, and entries that are not
plain files holding an emulator URL of a live process are ignored."""

from __future__ import annotations

import os
import stat
import tempfile

from backend.emulator.processes import _registry, announced, running_emulators


def test_the_list_is_owner_only_and_planted_entries_are_neither_followed_nor_listed(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = _registry()
    assert folder == tmp_path / f"spikeflash-emulators-{os.getuid()}"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (folder / str(os.getpid())).symlink_to(victim)  # planted where this process will announce
    (folder / str(os.getppid())).symlink_to(victim)  # a live pid, but a symlink
    (folder / "1").write_text("rm -rf /")  # a live pid, but no emulator URL
    (folder / "999999999").write_text("/dev/pts/3")  # a dead pid
    with announced("socket://127.0.0.1:5000"):
        assert victim.read_text() == "precious"
        assert running_emulators() == [(os.getpid(), "socket://127.0.0.1:5000")]
        assert stat.S_IMODE(os.lstat(folder / str(os.getpid())).st_mode) == 0o600
    assert running_emulators() == [] and not (folder / "999999999").exists()
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700


def test_a_folder_others_may_write_is_not_trusted(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = _registry()
    folder.mkdir()
    os.chmod(folder, 0o777)
    (folder / str(os.getppid())).write_text("/dev/pts/0")
    with announced("/dev/pts/9"):
        assert running_emulators() == []
    assert not (folder / str(os.getpid())).exists()
