"""Model files from the Hugging Face Hub: the local cache first, then (unless offline) a download
of just the files asked for, with huggingface_hub's progress bar on stderr."""

from __future__ import annotations

import re

from embscope.errors import EmbscopeError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w./-]+)?$")


def looks_like_hub_id(spec: str) -> bool:
    return bool(HUB_ID.match(spec)) and not spec.endswith((".pt", ".bin", ".safetensors", ".json", ".ckpt"))


class HubRepo:
    """A hub model `org/name@revision`, whose files are fetched one by one on demand."""

    def __init__(self, spec: str):
        self.repo_id, _, revision = spec.partition("@")
        self.revision = revision or None
        self.spec = spec
        self.unreachable = False  # a file was neither cached nor downloadable (offline, no network)

    def fetch(self, filename: str, required: bool = False) -> str | None:
        """Local path of `filename` in the repo; None when the repo has no such file."""
        import huggingface_hub as hh
        from huggingface_hub import errors

        cached = hh.try_to_load_from_cache(self.repo_id, filename, revision=self.revision)
        if isinstance(cached, str):
            return cached
        if cached is hh._CACHED_NO_EXIST and not required:
            return None
        try:
            path = hh.hf_hub_download(self.repo_id, filename, revision=self.revision)
        except errors.LocalEntryNotFoundError:
            self.unreachable = True
            if required:
                raise EmbscopeError(
                    f"{self.spec}: not a local path, and not in the Hugging Face cache"
                    " (the hub is offline or unreachable)"
                ) from None
            return None
        except (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError):
            if required:
                raise EmbscopeError(f"{self.spec}: the repository has no {filename}") from None
            return None
        except (errors.RepositoryNotFoundError, errors.HFValidationError):
            raise EmbscopeError(f"{self.spec}: no such model on the Hugging Face Hub") from None
        except errors.RevisionNotFoundError:
            raise EmbscopeError(f"{self.spec}: no revision '{self.revision}' on the Hugging Face Hub") from None
        except (OSError, errors.HfHubHTTPError) as e:
            raise EmbscopeError(f"{self.spec}: could not download {filename} ({e})") from None
        return path

