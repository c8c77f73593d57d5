from django.db import migrations, models

import vehicles.models


class Migration(migrations.Migration):
    dependencies = [
        ("vehicles", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="vehiclemodel",
            name="charging_curve",
            field=models.JSONField(
                error_messages={
                    "blank": "Give a charging curve of at least two points (SoC %, max kW), "
                    "e.g. 0:100 80:50.",
                    "null": "Give a charging curve of at least two points (SoC %, max kW), "
                    "e.g. 0:100 80:50.",
                },
                help_text="Points (SoC %, max kW), SoC strictly increasing: 0:100 80:50 or "
                "[[0, 100], [80, 50]].",
                validators=[vehicles.models.validate_charging_curve],
            ),
        ),
    ]
