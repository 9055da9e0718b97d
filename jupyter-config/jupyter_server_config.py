"""Jupyter server settings for this course; `make run` / `make test` install them into the venv's etc/jupyter."""


def language_name_only(model, **kwargs):
    """Save notebooks with metadata.language_info cut to its name, as they are committed: the kernel's
    version details differ between machines, so without this merely opening a notebook rewrites its file."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    metadata = model["content"].get("metadata", {})
    info = metadata.get("language_info")
    if isinstance(info, dict) and "name" in info:
        metadata["language_info"] = {"name": info["name"]}


c.FileContentsManager.pre_save_hook = language_name_only  # noqa: F821 (`c` is the config being loaded)
