from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("locations", "0002_dashadmin_country_iso3166"),
    ]

    operations = [
        migrations.AddField(
            model_name="location",
            name="load_management",
            field=models.BooleanField(
                default=False,
                help_text="A local controller keeps the site's chargers under the grid limit by "
                "lowering connector limits every second (equal shares). Off: they draw what "
                "they want, and the location page shows an overload.",
                verbose_name="load management",
            ),
        ),
    ]
