"""Importing this module registers the built-in signal types."""

from prescreen.signals import crypto, image, text, url, video

__all__ = ["crypto", "image", "text", "url", "video"]
