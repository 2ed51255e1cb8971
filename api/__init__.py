"""The typed Python API over the Temporal SDK: for operators, agencies and labs.

    from api.agency import AgencyClient
    nsa = AgencyClient(client, "nsa")
    await nsa.determine("review-anthropic-mythos-2-0", covered=True, agencies=["dod", "dhs"], rationale="...")

The CLI is a thin layer over these same calls.
"""
