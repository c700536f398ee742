import pytest

from engine.options import TESTING_ONLY, TRAINING_ONLY, build_parser, parse_options, unused_options


def test_the_authors_float_sizes_are_accepted_as_whole_numbers():
    opt = build_parser().parse_args(["--sat_size_h", "256.0", "--sa_num", "8"])
    assert (opt.sat_size_h, opt.sa_num) == (256, 8) and isinstance(opt.sat_size_h, int)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--sa_num", "7.5"])


def test_every_flag_of_the_authors_parser_is_accepted():
    authors = ["--results_dir", "r", "-o", "r", "--name", "n", "--seed", "1", "--gpu_ids", "0", "--isTrain",
               "--start_epoch", "3", "--debug", "--test", "--CVUSA", "--data_root_cvact", "a", "--data_root_cvusa",
               "u", "--train_csv", "t.csv", "--val_csv", "v.csv", "--mat_list", "m.mat", "--save_step", "5",
               "--checkpoint", "c.pth", "--sat_size_h", "256", "--sat_size_w", "256", "--grd_size_h", "128",
               "--grd_size_w", "512", "--sa_num", "8", "--n_epochs", "300", "--batch_size", "32",
               "--batch_size_val", "32", "--lr", "0.0001", "--b1", "0.5", "--b2", "0.999", "--lambda_sm", "10",
               "--hard_topk_ratio", "1.0", "--hard_decay1_topk_ratio", "0.1", "--hard_decay2_topk_ratio", "0.05",
               "--hard_decay3_topk_ratio", "0.01"]
    opt, given = parse_options(build_parser(), authors)
    assert opt.test and opt.start_epoch == 3 and opt.n_epochs == 300
    assert "gpu_ids" in given and "sa_num" in given and "no_fc" not in given and "precision" not in given


def test_given_options_are_told_apart_from_defaults_of_the_same_value():
    opt, given = parse_options(build_parser(), ["--sa_num", "8", "--gpu", "-1"])
    assert given == {"sa_num", "gpu_ids"} and opt.sa_num == 8 and opt.sat_size_h == 256
    assert unused_options(opt, given, TRAINING_ONLY) is None
    opt, given = parse_options(build_parser(), ["--n_epochs", "300", "--start_epoch", "2", "--match_radius", "0"])
    assert unused_options(opt, given, TRAINING_ONLY) == "accepted but unused here: --start_epoch 2, --n_epochs 300"
    assert unused_options(opt, given, TESTING_ONLY) == "accepted but unused here: --start_epoch 2, --match_radius 0.0"


