"""Importing this module registers the built-in signal types."""

from prescreen.signals import crypto, image, logo, text, text_near, url, video

__all__ = ["crypto", "image", "logo", "text", "text_near", "url", "video"]
