"""Transparency: statements of reasons for every restrictive decision (EU DSA Art. 17, exported
to the DSA Transparency Database), the TCO annual report (Regulation (EU) 2021/784 Art. 7(3)),
CyberTipline report bundles for confirmed CSAM under a one-year legal hold, and charts."""
