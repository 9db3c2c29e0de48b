"""A detached git worktree of the baseline ref, for `python -m bench --baseline REF`.

The baseline's servers run from this worktree with the harness's interpreter and virtualenv, so the twins
differ from the servers of the working tree in their code only. The worktree lives in a temporary folder and
is removed on the way out: at the end, on an error, on Ctrl-C and on SIGTERM (which the CLI turns into an
exception).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 120


class BaselineError(RuntimeError):
    """The ref does not name a commit, or git could not make the worktree."""


@dataclass(frozen=True)
class Baseline:
    ref: str
    commit: str
    worktree: Path

    def as_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "commit": self.commit, "worktree": str(self.worktree)}


def git(repository_root: Path, *arguments: str) -> str:
    """Run git in the repository and return its output; a failure raises BaselineError with git's message."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(repository_root), *arguments],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BaselineError(f"git {' '.join(arguments)} failed: {error}") from error
    if completed.returncode != 0:
        raise BaselineError(f"git {' '.join(arguments)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


def resolve_commit(repository_root: Path, ref: str) -> str:
    """The full hash of the commit `ref` names (a branch, a tag, HEAD~2, a hash)."""
    return git(repository_root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")


@contextmanager
def baseline_worktree(repository_root: Path, ref: str) -> Iterator[Baseline]:
    """A detached worktree of `ref` in a temporary folder, removed when the block ends, however it ends."""
    try:
        commit = resolve_commit(repository_root, ref)
    except BaselineError:
        raise BaselineError(f"--baseline {ref!r} does not name a commit of {repository_root}") from None
    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    worktree = folder / "worktree"
    try:
        git(repository_root, "worktree", "add", "--detach", str(worktree), commit)
        yield Baseline(ref, commit, worktree)
    finally:
        remove_worktree(repository_root, worktree)
        shutil.rmtree(folder, ignore_errors=True)


def remove_worktree(repository_root: Path, worktree: Path) -> None:
    """Remove the worktree and git's record of it; never raises, since it runs on the way out of errors too.

    Should git refuse, the folder is deleted by hand and git's stale records of missing worktrees are pruned.
    """
    try:
        git(repository_root, "worktree", "remove", "--force", str(worktree))
    except BaselineError:
        shutil.rmtree(worktree, ignore_errors=True)
        with suppress(BaselineError):
            git(repository_root, "worktree", "prune")
