"""A workflow whose code fails its workflow task (a bug), for the log handler's test: it imports
nothing but the SDK, so the sandbox loads it as it is."""

from temporalio import workflow


@workflow.defn(name="BrokenForLogs")
class BrokenForLogs:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.info("about to fail")
        raise RuntimeError("a bug in workflow code")


@workflow.defn(name="NotAReview")
class NotAReview:
    """A workflow that is not a review, waiting: a message meant for a review sent to it by mistake."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)
