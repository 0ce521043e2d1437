"""A local folder standing in for the Hugging Face Hub (no network): the `HfApi` calls the Trainer and this package
make, on `<root>/<namespace>/<name>/`. Installed in place of transformers' shared client (`hf_api()`)."""

from __future__ import annotations

import os
import shutil

from huggingface_hub import CommitInfo, HfApi, RepoUrl
from huggingface_hub.utils import filter_repo_objects

USER = "tester"
WRITE_TOKEN = "hf_local_write"
READ_TOKEN = "hf_local_read"


class LocalHub(HfApi):
    def __init__(self, root: str):
        super().__init__()
        self.root = root
        self.commits: list[tuple[str, str]] = []  # (repo_id, commit message)

    def path(self, repo_id: str) -> str:
        return os.path.join(self.root, repo_id)

    def _check(self, token) -> None:
        if token not in (WRITE_TOKEN, READ_TOKEN):
            raise PermissionError("401 Client Error: Unauthorized (invalid user token)")

    def whoami(self, token=None, **kwargs) -> dict:
        self._check(token)
        return {"name": USER, "auth": {"accessToken": {"role": "write" if token == WRITE_TOKEN else "read"}}}

    def repo_exists(self, repo_id: str, *, token=None, **kwargs) -> bool:
        return os.path.isdir(self.path(repo_id))

    def list_repo_files(self, repo_id: str, *, token=None, revision=None, **kwargs) -> list[str]:
        base = self.path(repo_id)
        return sorted(
            os.path.relpath(os.path.join(folder, name), base) for folder, _, names in os.walk(base) for name in names
        )

    def hf_hub_download(self, repo_id: str, filename: str, *, token=None, revision=None, **kwargs) -> str:
        return os.path.join(self.path(repo_id), filename)

    def create_repo(self, repo_id: str, *, token=None, private=None, exist_ok=False, **kwargs) -> RepoUrl:
        self._check(token or os.environ.get("HF_TOKEN"))
        repo_id = repo_id if "/" in repo_id else f"{USER}/{repo_id}"
        os.makedirs(self.path(repo_id), exist_ok=exist_ok)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, commit_message=None, token=None, revision=None,
                      allow_patterns=None, ignore_patterns=None, run_as_future=False, **kwargs):  # fmt: skip
        if run_as_future:  # on the client's worker thread, as the real upload: the caller goes on meanwhile
            return self.run_as_future(
                self.upload_folder, repo_id=repo_id, folder_path=folder_path, path_in_repo=path_in_repo,
                commit_message=commit_message, token=token, revision=revision, allow_patterns=allow_patterns,
                ignore_patterns=ignore_patterns,
            )  # fmt: skip
        self._check(token or os.environ.get("HF_TOKEN"))
        names = [
            os.path.relpath(os.path.join(folder, name), folder_path)
            for folder, _, files in os.walk(folder_path)
            for name in files
        ]
        target = os.path.join(self.path(repo_id), path_in_repo or "")
        for name in filter_repo_objects(names, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns):
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            shutil.copyfile(os.path.join(folder_path, name), os.path.join(target, name))
        self.commits.append((repo_id, commit_message))
        info = CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}", commit_message=commit_message or "",
            commit_description="", oid="0" * 40,
        )  # fmt: skip
        return info
