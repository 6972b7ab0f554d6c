"""One partition per Azure DevOps organization."""

import dagster as dg

ORG_PARTITIONS_NAME = "azdo_org"
org_partitions = dg.DynamicPartitionsDefinition(name=ORG_PARTITIONS_NAME)
