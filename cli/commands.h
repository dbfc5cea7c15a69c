/* The imgret subcommands. Each lives in its own cli/cmd_<name>.c and is
 * listed once in the table of imgret.c. A command returns the process exit
 * status (0 ok, 1 failure, 2 usage error) and prints its own messages;
 * its options are a cli_args.h table. */
#ifndef IMGRET_CLI_COMMANDS_H
#define IMGRET_CLI_COMMANDS_H

#include "cli/cli_args.h" /* cli_command_t */

int cmd_forward(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_ae_train(int argc, char **argv);
int cmd_ae_encode(int argc, char **argv);
int cmd_eval_retrieval(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
