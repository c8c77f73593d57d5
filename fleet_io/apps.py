from django.apps import AppConfig


class FleetIoConfig(AppConfig):
    name = "fleet_io"
    verbose_name = "Fleet import and export"
    default_auto_field = "django.db.models.BigAutoField"
