"""The charge point's behaviour, independent of protocol version, in plain Python.

Layers (top to bottom; each imports only what is below it, checked by import-linter):
``simulator.runtime`` (the process: lifecycle, store, meter engine, persistence) >
``simulator.ocpp16`` (the OCPP 1.6J adapter and its connection) > ``simulator.core`` (this
package) > ``simulator.contract`` (the web <-> engine messages). The core imports no
Django, no protocol library and no sockets.

What the core owns
    One `charge_point.Charger` per charge point composes parts that each own their state:
    connectors and their status (`evse`, changed only through ``Charger.set_status``),
    transactions (`transactions`), the configuration store (`configuration`), the
    authorization cache and the local authorization list (`authorization`, `local_list`),
    reservations (`reservations`), timers (`timers`), the ordered outbox
    (`outbox`: one CALL at a time, transaction messages numbered, made durable, retried per
    TransactionMessageAttempts / TransactionMessageRetryInterval, kept while offline), the
    charging profiles and limits (`smart_charging`) and the physics (`battery`,
    `dc_voltage`, `vehicle`). Other layers call its methods; none writes its state.

The adapter interface (`protocol.Messages`)
    The core never writes a message. For each one it calls a `Messages` method with
    neutral arguments and puts the ``(action, payload)`` it gets back in its outbox:

    - ``boot(identity)`` and ``read_boot(answer) -> BootAnswer`` (status, interval, clock);
    - ``connector_status(connector, status, error_code, info, timestamp)``;
    - ``heartbeat()`` and ``read_clock(answer)`` (the CSMS's time, to sync ``Charger.now``);
    - ``authorize(id_tag)`` and ``read_authorize(answer) -> IdTagAnswer``
      (`AuthStatus` accepted/blocked/expired/invalid, expiry, parent);
    - ``transaction_started(tx, connector, id_tag, meter_start, timestamp, reservation)``,
      ``read_transaction_started(answer) -> (transaction id, IdTagAnswer)`` and
      ``is_transaction_start(action)`` (for a start restored from durable storage);
    - ``transaction_ended(tx, meter_stop, timestamp, StopReason, id_tag, [MeterSample])``
      and ``read_transaction_ended(answer) -> IdTagAnswer | None`` (for the cache);
    - ``meter_values(connector, tx or None, SampleContext, timestamp, readings)``, where a
      reading is ``(value text, Quantity)`` and a `Quantity` (measurand, unit, location,
      phase) is one shared object from ``protocol.QUANTITIES``, so an adapter can look up
      its wire fields by identity on the hot path;
    - ``data_transfer(vendor_id, message_id, data)``, ``diagnostics_status(status)``,
      ``firmware_status(status)`` (`transfer.DiagnosticsStatus`, `transfer.FirmwareStatus`);
    - ``at_send(action, payload, tx)``, called by the outbox just before each attempt, so
      that what is known only then (1.6: the transaction id, or -1 before the start is
      confirmed) goes on the wire.

    Payloads are opaque to the core: it keeps them in order, makes transaction ones durable
    and hands the answers back to the adapter's ``read_*`` methods.

CSMS-initiated operations
    The adapter's connection receives the CSMS's calls, turns their arguments into plain
    values and calls ``operations.Operations``: an ``on_*`` method decides the answer (it
    never awaits a call of its own) and the matching ``after_*`` method does the follow-up
    once the answer is sent. Operations call ``Charger`` methods (``remote_start``,
    ``stop_transaction``, ``change_availability``, ``change_configuration``, ...), which
    send whatever follows through the adapter as above.

Injections
    - ``Charger(..., messages=...)``: the protocol adapter, fixed for the charger's life
      (its outbox may hold messages in that protocol's shape across a restart).
    - ``Charger(..., clock=...)``: a `timers.Clock` (monotonic, wall time, call_later);
      the default `timers.LoopClock` is the asyncio loop's. Timers, the heartbeat and
      sample deadlines and the outbox's retry wake-up run on it, so a test can advance
      time by hand. (Message timestamps still come from `clock.now_iso`, the wall clock.)
    - ``Charger(..., transfers=...)``: a `transfer.Transfers` that downloads firmware and
      uploads diagnostics files (I/O, so the runtime's: HTTP(S) and FTP off the event
      loop); the firmware and diagnostics procedures (`firmware`) decide when and what.
    - ``Charger.attach(transport)`` / ``detach()``: a `link.Transport` (``send_call`` with
      a callback, ``call``, ``close``, ``abort``) while the connection is up; ``boot_sequence``
      runs after each attach. A unit test attaches a fake one: no socket needed.

A second protocol version
    OCPP 2.0.1 would be a sibling package, ``simulator/ocpp201/``: a class implementing
    `protocol.Messages` with 2.0.1 shapes (TransactionEvent Started/Updated/Ended for the
    transaction builders, NotifyEvent or StatusNotification for connector status,
    MeterValues/TransactionEvent readings from the same `Quantity` objects), and its own
    connection that implements `link.Transport` and maps 2.0.1 CSMS calls onto
    `Operations` and ``Charger`` methods. The runtime chooses the adapter when it builds a
    ``Charger``. Nothing in ``core/`` changes. tests/toy_protocol.py is a complete, minimal
    adapter with another vocabulary, driven without sockets.
"""
