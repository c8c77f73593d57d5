"""The MCP server: the automation API's operations as MCP tools and resources.

Built on the official Python SDK (`mcp`, its `MCPServer`). Two transports serve the same
server: stdio (`manage.py mcp`, for an MCP client that starts the command itself) and
streamable HTTP at `/mcp` behind the API's token auth (`api.mcp_http`).

Each tool is a thin call of the function its REST endpoint runs (no HTTP hop), as the
transport's caller (`api.mcp_calls`), grouped as the API is: account, fleet (locations,
vehicle models, chargers), live state and actions, message log. A tool's docstring is what
the model reads about it.
"""

from __future__ import annotations

import functools

from mcp.server.mcpserver import MCPServer

from api.mcp_calls import caller_request, in_thread, tool_errors
from api.routers import account

INSTRUCTIONS = """\
ChargeSim simulates fleets of OCPP 1.6J charge points against a central system (CSMS).
Chargers are named by their charge point id. Read the fleet (locations, vehicle models,
chargers), read a charger's live state and the fleet summary, drive a charger as a driver
or technician would (plug in a vehicle, present an idTag, stop, unplug, faults, network
cuts) and read its OCPP message log. Actions can wait for a condition (wait_for, e.g.
"Charging") so that no polling is needed."""


@tool_errors
async def whoami() -> account.WhoAmI:
    """Who this MCP session acts as: the user, how they authenticated, their permissions
    (chargers.view_charger to read, chargers.change_charger to drive chargers)."""
    return await in_thread(account.whoami)(caller_request())


def build() -> MCPServer:
    """The server with every tool and resource."""
    server = MCPServer(
        "ChargeSim",
        title="ChargeSim",
        instructions=INSTRUCTIONS,
        version="1",
        log_level="WARNING",
    )
    for tool in (whoami,):
        server.add_tool(tool)
    return server


@functools.cache
def server() -> MCPServer:
    """The process's server, built once."""
    return build()
