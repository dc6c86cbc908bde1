"""A full disk (issue 13.6): uploads, imports and exports that run out of space answer 507 with a clear message,
and the project is unchanged and still works. The projects directory is a small tmpfs, so the disk is really full
(the test needs root to mount it and is skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", f"glmmlab-full-{uuid.uuid4().hex[:6]}",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(path, keep_free: int) -> None:
    """Write a filler file so that about ``keep_free`` bytes stay free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - keep_free))


def test_a_full_disk_is_a_507_with_a_message_and_changes_nothing(make_client, small_disk):
    client = make_client(projects_dir=small_disk)
    first = client.import_dataset("a,b\n1,x\n2,y\n", name="first")
    fill(small_disk, 300_000)
    big = ("x,y,z\n" + "".join(f"{i},{i * 0.5},level{i % 9}\n" for i in range(60_000))).encode()  # ~1.3 MB

    r = client.post("/api/datasets/import", params={"filename": "big.csv"}, content=big)
    assert r.status_code == 507, r.text
    assert "The upload could not be stored: the disk is full" in r.json()["error"]
    assert list(client.workbench.upload_dir.iterdir()) == []  # the partial upload is gone

    # an upload that fits, but whose import does not
    os.remove(small_disk / "filler")
    fill(small_disk, len(big) + 200_000)
    r = client.post("/api/datasets/import", params={"filename": "big.csv"}, content=big)
    assert r.status_code == 202, r.text
    job = client.wait_job(r.json()["id"])
    assert job["state"] == "failed" and "the disk is full" in job["error"], job

    os.remove(small_disk / "filler")
    fill(small_disk, 0)
    r = client.get("/api/project/export")
    assert r.status_code == 507 and "could not be exported: the disk is full" in r.json()["error"], r.text

    # nothing changed, and once there is room again the project takes new work
    assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == ["first"]
    assert client.get(f"/api/datasets/{first['id']}/rows").json()["rows"] == [[1, "x"], [2, "y"]]
    os.remove(small_disk / "filler")
    time.sleep(0.1)
    assert client.import_dataset(big, name="later")["n_rows"] == 60_000
