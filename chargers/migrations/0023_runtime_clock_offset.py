"""The charger's clock offset, kept from a clock step on: a restart dates its PowerLoss
stops, and starts its clock, on the charger's clock, not the host's."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0022_auth_cache_entry"),
    ]

    operations = [
        migrations.AddField(
            model_name="runtimestate",
            name="clock_offset_s",
            field=models.FloatField(default=0.0, editable=False),
        ),
    ]
