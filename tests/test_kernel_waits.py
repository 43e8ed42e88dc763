"""The runner's kernel client waits in slices (mtkit.teach.kernels.sliced_wait_client_class): a message already on
the socket is read within a slice, and a wait that finds nothing still ends at its own deadline."""
import asyncio
import time
from queue import Empty

import pytest

from mtkit.teach import kernels


def test_sliced_wait_client_keeps_deadline_and_delivers(tmp_path):
    km = kernels.kernel_manager_class(tmp_path / "k.log")(kernel_name="python3")
    async def go():
        await km.start_kernel()
        kc = km.client(); kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            assert type(kc.shell_channel).__name__ == "SlicedWaitChannel"
            t0 = time.monotonic()
            with pytest.raises(Empty):
                await kc.shell_channel.get_msg(timeout=2.5)
            waited = time.monotonic() - t0
            msg_id = kc.execute("1+1")
            reply = await kc.shell_channel.get_msg(timeout=30)
            assert reply["parent_header"]["msg_id"] == msg_id
            return waited
        finally:
            kc.stop_channels(); await km.shutdown_kernel(now=True)
    waited = asyncio.run(go())
    assert 2.4 <= waited < 4.0, waited
