"""Message templates: plain {fields} only, rendered from the audience row."""
import pytest

from app.campaigns.templates import missing_fields, render, template_fields
from app.errors import Invalid


def test_fields_render_and_missing_ones_are_named():
    assert template_fields("Hi {name}, {name}: {amount} due {due date}") == ["name", "amount", "due date"]
    assert render("Hi {name}, {amount} due", {"name": "Asha", "amount": 12.5}) == "Hi Asha, 12.5 due"
    assert render("{{literal}} {x}", {"x": None}) == "{literal} "
    assert missing_fields("Hi {name} {email}", {"name"}) == ["email"]


@pytest.mark.parametrize("template", ["{0}", "{}", "{a.b}", "{a[0]}", "{a!r}", "{a:>10}", "{a", "a}"])
def test_anything_but_a_plain_field_is_refused(template):
    with pytest.raises(Invalid) as refused:
        template_fields(template)
    assert refused.value.slug == "invalid-template"
