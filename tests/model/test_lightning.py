import pytest
import torch

from model.lightning import CrossViewModule, NonFiniteLossError


def test_a_non_finite_loss_raises_naming_epoch_and_batch():
    # that the weights stay those of the last good state is checked through train.py (tests/test_train.py)
    module = CrossViewModule((64, 64), (32, 128), pretrained=False)
    batch = {"sat": torch.full((4, 3, 64, 64), float("nan")), "grd": torch.randn(4, 3, 32, 128)}
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0, batch 7"):
        module.training_step(batch, 7)


def test_batches_are_scaled_to_the_model_range_on_the_device():
    module = CrossViewModule((64, 64), (32, 128), pretrained=False)
    batch = {"sat": torch.full((2, 3, 64, 64), 255, dtype=torch.uint8),
             "grd": torch.zeros((2, 3, 32, 128), dtype=torch.uint8)}
    scaled = module.on_after_batch_transfer(batch, 0)
    assert torch.all(scaled["sat"] == 1.0) and torch.all(scaled["grd"] == -1.0)


def test_compile_keeps_the_checkpoint_keys_of_the_plain_network():
    # Compiling happens at the first call, which takes minutes on a CPU; building is enough to check the wiring.
    plain = CrossViewModule((32, 32), (16, 64), pretrained=False)
    compiled = CrossViewModule((32, 32), (16, 64), pretrained=False, compile_net=True)
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
