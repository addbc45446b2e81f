"""The training instruction template of the pick-and-place benchmark (paper Appendix A.4).

Examples:
    >>> format_instruction(TRAIN_INSTRUCTION_TEMPLATE, "carrot", "plate")
    'put carrot on plate'
"""

from __future__ import annotations

__all__ = ["TRAIN_INSTRUCTION_TEMPLATE", "format_instruction"]

# Appendix A.4, Training: 'The language instruction is "put $O$ on $R$"'.
TRAIN_INSTRUCTION_TEMPLATE = "put {object} on {receptacle}"


def format_instruction(template: str, object_name: str, receptacle_name: str) -> str:
    """Fill a template with ``{object}`` and ``{receptacle}`` placeholders.

    Args:
        template: a string with the ``{object}`` and ``{receptacle}`` fields.
        object_name: the natural name of the object to move (e.g. ``"carrot"``).
        receptacle_name: the natural name of the receptacle (e.g. ``"plate"``).

    Returns:
        the instruction string.

    Examples:
        >>> format_instruction("Can you put {object} on {receptacle}?", "red mug", "blue tray")
        'Can you put red mug on blue tray?'
    """
    for field in ("{object}", "{receptacle}"):
        if field not in template:
            raise ValueError(
                f"instruction template {template!r} lacks the {field} field; write it as "
                "e.g. 'put {object} on {receptacle}'"
            )
    return template.format(object=object_name, receptacle=receptacle_name)
