import pytest
from django.core.exceptions import ValidationError

from locations.models import Location

pytestmark = pytest.mark.django_db


def test_it_rejects_an_unknown_time_zone():
    location = Location(name="X", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError, match="IANA time zone"):
        location.full_clean()


def test_it_needs_both_coordinates_or_neither():
    with pytest.raises(ValidationError, match="both latitude and longitude"):
        Location(name="X", latitude=52.0).full_clean()


def test_a_coordinate_the_admin_cannot_read_is_the_only_error_said(admin_client_logged_in):
    """QA: latitude "abc" also got "Give both latitude and longitude, or neither." at the
    top of the page, though both were given."""
    from django.urls import reverse

    response = admin_client_logged_in.post(
        reverse("admin:locations_location_add"),
        {
            "name": "X",
            "country": "DE",
            "latitude": "abc",
            "longitude": "13.3",
            "time_zone": "UTC",
            "rotation_minutes": "15",
        },
    )
    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"latitude"}, errors
    assert not Location.objects.filter(name="X").exists()


def test_it_rejects_out_of_range_coordinates_and_negative_grid_limit():
    with pytest.raises(ValidationError) as info:
        Location(name="X", latitude=91, longitude=0, grid_limit_kw=-1).full_clean()
    assert set(info.value.message_dict) == {"latitude", "grid_limit_kw"}


def test_names_are_unique():
    Location.objects.create(name="Depot")
    with pytest.raises(ValidationError, match="already exists"):
        Location(name="Depot").full_clean()


def test_default_locations_are_seeded_only_when_none_exist():
    assert Location.objects.seed_defaults() == len(Location.objects.DEFAULTS)
    for location in Location.objects.all():
        location.full_clean()
    assert Location.objects.seed_defaults() == 0


def test_the_admin_says_what_a_time_zone_is_and_does(admin_client_logged_in):
    """QA: the location's time zone had no help text; a user could not tell its format
    nor that it sets the hours of the site's traffic profile."""
    from django.urls import reverse

    page = admin_client_logged_in.get(reverse("admin:locations_location_add"))
    help_text = str(page.context["adminform"].form.fields["time_zone"].help_text)
    assert "Europe/Berlin" in help_text and "traffic profile" in help_text
    assert help_text in page.content.decode()
