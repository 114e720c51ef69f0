/* bagel-train — the training process: sample records in, checkpoints and
 * metrics out. A data thread packs token-budget micro-batches ahead of the
 * step (data.c); the step runs forward and backward through the model
 * (models/), accumulates, clips, updates with AdamW on a schedule, keeps EMA
 * weights; checkpoints in BAGEL's layout resume exactly (run.c).
 *
 *   ... | bagel-train --config tiny --out runs/demo --steps 200 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../../models/checkpoint.h"
#include "../../models/model.h"
#include "../common/compute_env.h"
#include "../common/log.h"
#include "../common/stage.h"
#include "data.h"
#include "run.h"

static const char help[] =
    "usage: bagel-train --out DIR [options] [INPUT]...\n"
    "Train a BAGEL-shaped model on sample records (from bagel-tokenize | bagel-image | bagel-encode).\n"
    "Model:\n"
    "      --config NAME|PATH  model config: tiny, bagel-0.5b-mot, bagel-7b-mot, a file or a checkpoint dir\n"
    "      --init PATH         start from these weights (a .safetensors, an index, or a checkpoint dir;\n"
    "                          ema.safetensors is used when --init-ema is given)\n"
    "      --init-ema          take the EMA weights of --init\n"
    "      --finetune DIR      preset: config and EMA weights from DIR, lr 2e-5, BAGEL's fine-tune budgets\n"
    "      --freeze LIST       comma list of llm, vit, connector, und, gen (branches kept fixed)\n"
    "      --device cpu|cuda   where the model runs (default cpu; cuda when built with CUDA)\n"
    "      --precision fp32|bf16  matrix math on cuda (default bf16: tensor cores, fp32 accumulation and master weights)\n"
    "      --tokenizer FILE    the tokenizer.json the data was tokenized with: copied into every checkpoint\n"
    "      --peak-tflops X     the device's peak bf16 rate for the MFU figure (default: known GPUs)\n"
    "      --recompute         keep one layer's activations and recompute the others in the backward:\n"
    "                          the same results, a fraction of the activation memory, about a third more\n"
    "                          layer compute\n"
    "      --vae PATH          the FLUX autoencoder (ae.safetensors) for images that arrive without latents\n"
    "Run:\n"
    "      --out DIR           the run directory (checkpoints/, metrics.jsonl, tb/, rejects.jsonl)\n"
    "      --steps N           optimizer steps (default 1000)\n"
    "      --accum K           micro-batches per step (default 1)\n"
    "      --seed S            seed of every random draw (default 4396)\n"
    "      --resume auto|DIR   continue from the newest complete checkpoint, or from DIR\n"
    "      --input-offset N    the input starts at record N (bagel-read --skip N)\n"
    "      --save-every N      checkpoint every N steps (default 500; 0: only at the end)\n"
    "      --keep-last K       keep the K newest checkpoints (default 3; the best is kept too)\n"
    "      --save-dtype T      f32 or bf16 weights in checkpoints (default f32)\n"
    "      --max-bad-steps K   stop after K non-finite steps in a row (default 5)\n"
    "      --max-memory SIZE   refuse plans larger than this (default: 90% of available memory)\n"
    "      --log-every N       metrics and progress every N steps (default 1)\n"
    "Optimizer (BAGEL's defaults):\n"
    "      --lr X --min-lr X --warmup N --schedule constant|linear|cosine|none\n"
    "      --beta1 0.9 --beta2 0.95 --eps 1e-15 --weight-decay 0 --clip 1.0 --ema 0.9999 (0: off)\n"
    "Loss:\n"
    "      --ce-weight 1 --mse-weight 1 --ce-reweight  (len2weight \"square\" per text)\n"
    "      --timestep-shift S  training shift of the logit-normal timesteps (default: the config's)\n"
    "Packing:\n"
    "      --tokens N          expected tokens per micro-batch (default 32768)\n"
    "      --max-tokens N      at most (default 36864, or 9/8 of --tokens)\n"
    "      --max-sample-tokens N  longer samples are rejects (default 16384, at most --max-tokens)\n"
    "      --buffer N          held-back samples (default 50)   --prefetch N batches ahead (default 2)\n"
    "      --text-drop P --vae-drop P --vit-drop P  condition dropout (0.1, 0.3, 0.3)\n"
    "Validation:\n"
    "      --val EP            validation samples (an endpoint that can be read again: files)\n"
    "      --val-every N       steps between validations (default: --save-every)\n"
    "      --patience N        stop after N validations without improvement (default: never)\n"
    "      --val-metric M      loss, ce or mse (default loss); the best checkpoint is kept\n"
    "Samples (docs/generate.md):\n"
    "      --sample-prompts FILE  held-out sample records; each one's target is generated from what\n"
    "                          precedes it (a caption, an answer, an image, an edit)\n"
    "      --sample-every N    generate them every N steps and at the end, with the EMA weights, into\n"
    "                          DIR/samples/ (shown in DIR/report.html)\n"
    "      --sample-count N    prompts taken from the file (default 6)\n"
    "      --sample-steps N    image timesteps (default 30)\n";

enum {
    O_CONFIG = 1,
    O_INIT,
    O_INIT_EMA,
    O_FINETUNE,
    O_FREEZE,
    O_STEPS,
    O_ACCUM,
    O_SEED,
    O_RESUME,
    O_INPUT_OFFSET,
    O_SAVE_EVERY,
    O_KEEP_LAST,
    O_SAVE_DTYPE,
    O_MAX_BAD,
    O_MAX_MEMORY,
    O_LOG_EVERY,
    O_LR,
    O_MIN_LR,
    O_WARMUP,
    O_SCHEDULE,
    O_BETA1,
    O_BETA2,
    O_EPS,
    O_WD,
    O_CLIP,
    O_EMA,
    O_CE_W,
    O_MSE_W,
    O_CE_REWEIGHT,
    O_SHIFT,
    O_TOKENS,
    O_MAX_TOKENS,
    O_MAX_SAMPLE,
    O_BUFFER,
    O_PREFETCH,
    O_TEXT_DROP,
    O_VAE_DROP,
    O_VIT_DROP,
    O_VAL,
    O_VAL_EVERY,
    O_PATIENCE,
    O_VAL_METRIC,
    O_OUTDIR,
    O_VAE,
    O_DEVICE,
    O_PRECISION,
    O_PEAK,
    O_RECOMPUTE,
    O_TOKENIZER,
    O_SAMPLE_EVERY,
    O_SAMPLE_PROMPTS,
    O_SAMPLE_COUNT,
    O_SAMPLE_STEPS,
};

static double num_arg(const char *opt, const char *arg, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= lo && v <= hi)) {
        log_error("--%s: '%s' is not a number in [%g, %g]", opt, arg, lo, hi);
        exit(EXIT_USAGE);
    }
    return v;
}

static long int_arg(const char *opt, const char *arg, long lo, long hi)
{
    unsigned long long v;
    if (stage_parse_range(opt, arg, (unsigned long long)lo, (unsigned long long)hi, &v))
        exit(EXIT_USAGE);
    return (long)v;
}

int main(int argc, char **argv)
{
    compute_env_setup(argv);
    stage_t st;
    stage_init(&st, "bagel-train");
    train_opts_t o;
    train_opts_default(&o);
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"config", required_argument, 0, O_CONFIG},
        {"init", required_argument, 0, O_INIT},
        {"init-ema", no_argument, 0, O_INIT_EMA},
        {"finetune", required_argument, 0, O_FINETUNE},
        {"freeze", required_argument, 0, O_FREEZE},
        {"steps", required_argument, 0, O_STEPS},
        {"accum", required_argument, 0, O_ACCUM},
        {"seed", required_argument, 0, O_SEED},
        {"resume", required_argument, 0, O_RESUME},
        {"input-offset", required_argument, 0, O_INPUT_OFFSET},
        {"save-every", required_argument, 0, O_SAVE_EVERY},
        {"keep-last", required_argument, 0, O_KEEP_LAST},
        {"save-dtype", required_argument, 0, O_SAVE_DTYPE},
        {"max-bad-steps", required_argument, 0, O_MAX_BAD},
        {"max-memory", required_argument, 0, O_MAX_MEMORY},
        {"log-every", required_argument, 0, O_LOG_EVERY},
        {"lr", required_argument, 0, O_LR},
        {"min-lr", required_argument, 0, O_MIN_LR},
        {"warmup", required_argument, 0, O_WARMUP},
        {"schedule", required_argument, 0, O_SCHEDULE},
        {"beta1", required_argument, 0, O_BETA1},
        {"beta2", required_argument, 0, O_BETA2},
        {"eps", required_argument, 0, O_EPS},
        {"weight-decay", required_argument, 0, O_WD},
        {"clip", required_argument, 0, O_CLIP},
        {"ema", required_argument, 0, O_EMA},
        {"ce-weight", required_argument, 0, O_CE_W},
        {"mse-weight", required_argument, 0, O_MSE_W},
        {"ce-reweight", no_argument, 0, O_CE_REWEIGHT},
        {"timestep-shift", required_argument, 0, O_SHIFT},
        {"tokens", required_argument, 0, O_TOKENS},
        {"max-tokens", required_argument, 0, O_MAX_TOKENS},
        {"max-sample-tokens", required_argument, 0, O_MAX_SAMPLE},
        {"buffer", required_argument, 0, O_BUFFER},
        {"prefetch", required_argument, 0, O_PREFETCH},
        {"text-drop", required_argument, 0, O_TEXT_DROP},
        {"vae-drop", required_argument, 0, O_VAE_DROP},
        {"vit-drop", required_argument, 0, O_VIT_DROP},
        {"val", required_argument, 0, O_VAL},
        {"val-every", required_argument, 0, O_VAL_EVERY},
        {"sample-every", required_argument, 0, O_SAMPLE_EVERY},
        {"sample-prompts", required_argument, 0, O_SAMPLE_PROMPTS},
        {"sample-count", required_argument, 0, O_SAMPLE_COUNT},
        {"sample-steps", required_argument, 0, O_SAMPLE_STEPS},
        {"patience", required_argument, 0, O_PATIENCE},
        {"val-metric", required_argument, 0, O_VAL_METRIC},
        {"vae", required_argument, 0, O_VAE},
        {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PRECISION},
        {"peak-tflops", required_argument, 0, O_PEAK},
        {"recompute", no_argument, 0, O_RECOMPUTE},
        {"tokenizer", required_argument, 0, O_TOKENIZER},
        {0, 0, 0, 0},
    };
    int c, max_set = 0, sample_set = 0;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == OPT_OUT) { /* --out is the run directory here, not a stream */
            o.out = optarg;
            continue;
        }
        if (stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case O_CONFIG: o.config = optarg; break;
        case O_INIT: o.init = optarg; break;
        case O_INIT_EMA: o.init_ema = 1; break;
        case O_FINETUNE: o.finetune = optarg; break;
        case O_FREEZE: o.freeze = optarg; break;
        case O_STEPS: o.steps = int_arg("steps", optarg, 1, 1000000000); break;
        case O_ACCUM: o.accum = (int)int_arg("accum", optarg, 1, 1 << 20); break;
        case O_SEED: o.seed = (uint64_t)int_arg("seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_RESUME: o.resume = optarg; break;
        case O_INPUT_OFFSET: o.input_offset = (uint64_t)int_arg("input-offset", optarg, 0, 0x7fffffffffffffffL); break;
        case O_SAVE_EVERY: o.save_every = int_arg("save-every", optarg, 0, 1000000000); break;
        case O_KEEP_LAST: o.keep_last = (int)int_arg("keep-last", optarg, 1, 1000000); break;
        case O_SAVE_DTYPE:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) {
                log_error("--save-dtype: '%s', expected f32 or bf16", optarg);
                return EXIT_USAGE;
            }
            o.save_bf16 = !strcmp(optarg, "bf16");
            break;
        case O_MAX_BAD: o.max_bad_steps = (int)int_arg("max-bad-steps", optarg, 1, 1000000); break;
        case O_MAX_MEMORY: {
            unsigned long long v;
            if (stage_parse_size("max-memory", optarg, &v))
                return EXIT_USAGE;
            o.max_memory = v;
            break;
        }
        case O_LOG_EVERY: o.log_every = int_arg("log-every", optarg, 1, 1000000000); break;
        case O_LR: o.lr = num_arg("lr", optarg, 0, 10); break;
        case O_MIN_LR: o.min_lr = num_arg("min-lr", optarg, 0, 10); break;
        case O_WARMUP: o.warmup = int_arg("warmup", optarg, 0, 1000000000); break;
        case O_SCHEDULE:
            if (strcmp(optarg, "constant") && strcmp(optarg, "linear") && strcmp(optarg, "cosine") &&
                strcmp(optarg, "none")) {
                log_error("--schedule: '%s', expected constant, linear, cosine or none", optarg);
                return EXIT_USAGE;
            }
            o.schedule = optarg;
            break;
        case O_BETA1: o.beta1 = num_arg("beta1", optarg, 0, 0.999999); break;
        case O_BETA2: o.beta2 = num_arg("beta2", optarg, 0, 0.999999999); break;
        case O_EPS: o.eps = num_arg("eps", optarg, 0, 1); break;
        case O_WD: o.weight_decay = num_arg("weight-decay", optarg, 0, 10); break;
        case O_CLIP: o.clip = num_arg("clip", optarg, 0, 1e9); break;
        case O_EMA: o.ema = num_arg("ema", optarg, 0, 0.99999999); break;
        case O_CE_W: o.ce_weight = num_arg("ce-weight", optarg, 0, 1e6); break;
        case O_MSE_W: o.mse_weight = num_arg("mse-weight", optarg, 0, 1e6); break;
        case O_CE_REWEIGHT: o.ce_reweight = 1; break;
        case O_SHIFT: o.timestep_shift = num_arg("timestep-shift", optarg, 0.01, 100); break;
        case O_TOKENS: o.data.expected_tokens = int_arg("tokens", optarg, 16, 1 << 24); break;
        case O_MAX_TOKENS:
            o.data.max_tokens = int_arg("max-tokens", optarg, 16, 1 << 24);
            max_set = 1;
            break;
        case O_MAX_SAMPLE:
            o.data.max_per_sample = int_arg("max-sample-tokens", optarg, 4, 1 << 24);
            sample_set = 1;
            break;
        case O_BUFFER: o.data.max_buffer = (int)int_arg("buffer", optarg, 0, DATA_MAX_OUTSTANDING - 1); break;
        case O_PREFETCH: o.data.prefetch = (int)int_arg("prefetch", optarg, 1, 64); break;
        case O_TEXT_DROP: o.data.pack.text_drop = (float)num_arg("text-drop", optarg, 0, 1); break;
        case O_VAE_DROP: o.data.pack.vae_drop = (float)num_arg("vae-drop", optarg, 0, 1); break;
        case O_VIT_DROP: o.data.pack.vit_drop = (float)num_arg("vit-drop", optarg, 0, 1); break;
        case O_VAL: o.val = optarg; break;
        case O_VAE: o.vae = optarg; break;
        case O_DEVICE: o.device = optarg; break;
        case O_PRECISION: o.precision = optarg; break;
        case O_PEAK: o.peak_tflops = num_arg("peak-tflops", optarg, 0, 1e6); break;
        case O_RECOMPUTE: o.recompute = 1; break;
        case O_TOKENIZER: o.tokenizer = optarg; break;
        case O_VAL_EVERY: o.val_every = int_arg("val-every", optarg, 1, 1000000000); break;
        case O_SAMPLE_EVERY: o.sample_every = int_arg("sample-every", optarg, 1, 1000000000); break;
        case O_SAMPLE_PROMPTS: o.sample_prompts = optarg; break;
        case O_SAMPLE_COUNT: o.sample_count = (int)int_arg("sample-count", optarg, 1, 64); break;
        case O_SAMPLE_STEPS: o.sample_steps = (int)int_arg("sample-steps", optarg, 2, 1000); break;
        case O_PATIENCE: o.patience = (int)int_arg("patience", optarg, 1, 1000000); break;
        case O_VAL_METRIC:
            if (strcmp(optarg, "loss") && strcmp(optarg, "ce") && strcmp(optarg, "mse")) {
                log_error("--val-metric: '%s', expected loss, ce or mse", optarg);
                return EXIT_USAGE;
            }
            o.val_metric = optarg;
            break;
        default: fprintf(stderr, "%s", help); return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc && st.ninputs < STAGE_MAX_INPUTS; i++)
        st.inputs[st.ninputs++] = argv[i];
    /* --tokens alone keeps BAGEL's proportions: max = 9/8 of it, and a sample
     * at most half of the default ratio (16384 of 32768) */
    if (!max_set && o.data.expected_tokens != data_default_opts.expected_tokens)
        o.data.max_tokens = o.data.expected_tokens + o.data.expected_tokens / 8;
    if (!sample_set && o.data.max_per_sample > o.data.max_tokens)
        o.data.max_per_sample = o.data.max_tokens;
    if (!o.out) {
        log_error("--out: the run directory is required");
        return EXIT_USAGE;
    }
    if (o.sample_every && !o.sample_prompts) {
        log_error("--sample-every: needs --sample-prompts, the records to generate from");
        return EXIT_USAGE;
    }
    o.inputs = st.inputs;
    o.ninputs = st.ninputs;
    o.stream = &st.so;
    o.quiet = st.progress == PROGRESS_OFF;
    /* SIGINT/SIGTERM: the run finishes its step, saves and ends with 0 */
    return train_run(&o);
}
