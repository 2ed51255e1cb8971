"""A workflow whose code fails its workflow task (a bug), for the log handler's test: it imports
nothing but the SDK, so the sandbox loads it as it is."""

from temporalio import workflow


@workflow.defn(name="BrokenForLogs")
class BrokenForLogs:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.info("about to fail")
        raise RuntimeError("a bug in workflow code")
