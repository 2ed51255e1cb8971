"""Who a trusted partner is: the 16 critical-infrastructure sectors (PPD-21) and the
other kinds of organisation that labs really share models with."""

from __future__ import annotations

from enum import StrEnum


class Sector(StrEnum):
    # The 16 critical-infrastructure sectors.
    CHEMICAL = "chemical"
    COMMERCIAL_FACILITIES = "commercial-facilities"
    COMMUNICATIONS = "communications"
    CRITICAL_MANUFACTURING = "critical-manufacturing"
    DAMS = "dams"
    DEFENSE_INDUSTRIAL_BASE = "defense-industrial-base"
    EMERGENCY_SERVICES = "emergency-services"
    ENERGY = "energy"
    FINANCIAL_SERVICES = "financial-services"
    FOOD_AND_AGRICULTURE = "food-and-agriculture"
    GOVERNMENT_FACILITIES = "government-facilities"
    HEALTHCARE_AND_PUBLIC_HEALTH = "healthcare-and-public-health"
    INFORMATION_TECHNOLOGY = "information-technology"
    NUCLEAR = "nuclear"
    TRANSPORTATION = "transportation"
    WATER = "water"
    # Partners that are not infrastructure operators.
    SECURITY_VENDOR = "security-vendor"
    SOFTWARE_VENDOR = "software-vendor"
    CLOUD_PROVIDER = "cloud-provider"
    RESEARCH = "research"
    GOVERNMENT = "government"


CRITICAL_INFRASTRUCTURE: frozenset[Sector] = frozenset(
    s
    for s in Sector
    if s
    not in {
        Sector.SECURITY_VENDOR,
        Sector.SOFTWARE_VENDOR,
        Sector.CLOUD_PROVIDER,
        Sector.RESEARCH,
        Sector.GOVERNMENT,
    }
)
