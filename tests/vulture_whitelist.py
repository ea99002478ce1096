"""Names vulture (``tests/test_dead_code.py``, 100 % confidence) must not report: used by
Python or a library, not by a call vulture can see.

Each line names where the name sits and why it stays."""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

