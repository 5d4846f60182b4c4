"""Text classifiers: the built-in terrorism and hate heads, a plug-in interface for others
(Python entry points, HTTP moderation endpoints), training and evaluation."""
