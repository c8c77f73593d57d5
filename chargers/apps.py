from django.apps import AppConfig


class ChargersConfig(AppConfig):
    name = "chargers"
    verbose_name = "Chargers"

    def ready(self) -> None:
        # A log-out closes the dashboard's sockets of its session (a signal receiver).
        import chargers.dashboard.access  # noqa: F401
        from chargers.resources import ChargerResource
        from fleet_io.registry import Importable, register

        register(
            Importable(
                name="chargers",
                resource=ChargerResource,
                # An import creates and updates chargers, reshapes each charger's EVSEs
                # (deleting connectors a row no longer lists) and sets configuration keys
                # (chargers.fleet.create_chargers / update_chargers).
                permissions=(
                    "chargers.add_charger",
                    "chargers.change_charger",
                    "chargers.add_evse",
                    "chargers.change_evse",
                    "chargers.delete_evse",
                    "chargers.add_configurationkey",
                    "chargers.change_configurationkey",
                ),
                changelist="admin:chargers_charger_changelist",
            )
        )
