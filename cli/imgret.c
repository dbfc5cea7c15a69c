/* imgret: one binary, git-style subcommands. */
#include "cli/commands.h"

static const cli_command_t commands[] = {
    {"forward", "run the AlexNet forward pass on CPU and print the top-5 classes", cmd_forward},
    {"import", "import AlexNet weights from Caffe (.caffemodel) or ONNX", cmd_import},
    {"export", "export a model file as ONNX", cmd_export},
    {"info", "print a model file's spec, parameters, normalisation and hash", cmd_info},
    {"demo", "the main job: train, extract, autoencoder, index, then serve (resumable)", cmd_demo},
    {"train", "train AlexNet with the paper's recipe (default: Fashion-MNIST)", cmd_train},
    {"eval", "top-1/top-5 error of a model, centre crop and ten crops", cmd_eval},
    {"classify", "top-5 classes of images (ten crops averaged)", cmd_classify},
    {"stats", "training-set mean image and PCA (lighting) eigen data", cmd_stats},
    {"extract", "extract FC7 features of a dataset into a feature file (resumable)", cmd_extract},
    {"ae-train", "train the binary-code autoencoder on a feature file", cmd_ae_train},
    {"ae-encode", "binary codes of a feature file's rows with a trained autoencoder",
     cmd_ae_encode},
    {"eval-retrieval", "retrieval quality: pixels, FC7, AE codes, ITQ, LSH, two-stage",
     cmd_eval_retrieval},
    {"index", "the item store and its FAISS indexes: build, add, remove, search, stats", cmd_index},
    {"serve", "the search service: Twirp RPCs over HTTP, /metrics, a web page", cmd_serve},
    {"search", "search a running imgret serve by image or item id", cmd_search},
};

int main(int argc, char **argv) {
    return cli_dispatch(NULL, NULL, commands, sizeof commands / sizeof commands[0], argc, argv);
}
