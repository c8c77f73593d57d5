from django.db import migrations, models

import locations.models


class Migration(migrations.Migration):
    dependencies = [
        ("locations", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="location",
            name="country",
            field=models.CharField(
                blank=True,
                help_text="ISO 3166-1 alpha-2 code, e.g. DE.",
                max_length=2,
                validators=[locations.models.validate_country_code],
            ),
        ),
    ]
